//! `ipfs-accelerate infer …`: local inference on models from the registry.

use std::io::Write;

use anyhow::Context;
use ipfs_accelerate_common::config::Config;
use ipfs_accelerate_common::store::{AddInput, AddOptions, Range, Store};
use ipfs_accelerate_worker::speech::{SpeechTask, SynthesizeOptions, TranscribeOptions};
use ipfs_accelerate_worker::text::{GenerateParams, Prompt};
use ipfs_accelerate_worker::{ImageSource, Inference, VideoSource, Worker, WorkerConfig};
use serde::Serialize;

use crate::cli::{
    ImageArg, ImageTextGeneration, InferArgs, InferAudioCommand, InferCommand,
    InferMultimodalCommand, InferTextCommand, InferVisionCommand, SpeechTaskArg,
};
use crate::output::{fail, Output};

pub async fn run(
    args: InferArgs,
    config: &Config,
    quiet: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let mut settings = config.section::<WorkerConfig>(|v| std::env::var(v).ok())?;
    if let InferCommand::Audio(InferAudioCommand::Transcribe { threads: Some(threads), .. }) =
        &args.command
    {
        anyhow::ensure!(*threads > 0, "--threads must be at least 1");
        settings.threads = Some(*threads);
    }
    settings.device = args.device.as_deref().map(device_name);
    if args.no_cache {
        settings.cache_results = false;
    }
    let worker = Worker::new(Store::open_config(config).await?, settings);
    let model = args.model.as_deref();
    match args.command {
        InferCommand::Audio(command) => audio(&worker, model, command, quiet, out).await,
        InferCommand::Vision(InferVisionCommand::Classify { image, top_k }) => {
            let result = worker.classify_image(model, image_source(image)?, top_k).await?;
            emit(&result, quiet, out, || {
                for l in &result.output.labels {
                    println!("{:>6.2}%  {}", l.score * 100.0, l.label);
                }
            })
        }
        InferCommand::Vision(InferVisionCommand::Embed { image }) => {
            let result = worker.embed_image(model, image_source(image)?).await?;
            emit(&result, quiet, out, || {
                let head: Vec<String> =
                    result.output.vector.iter().take(6).map(|x| format!("{x:.5}")).collect();
                println!("[{}, …] ({} values)", head.join(", "), result.output.dim);
            })
        }
        InferCommand::Multimodal(InferMultimodalCommand::VideoSimilarity {
            video,
            frames,
            text,
        }) => {
            let source = match video {
                Some(path) => VideoSource::File(read_input(&path)?),
                None => VideoSource::Frames(
                    frames.iter().map(|p| read_input(p)).collect::<anyhow::Result<_>>()?,
                ),
            };
            let result = worker.video_text_similarity(model, source, text).await?;
            emit(&result, quiet, out, || {
                for t in &result.output.texts {
                    println!(
                        "{:>6.2}%  logit {:+.3}  {}",
                        t.probability * 100.0,
                        t.logit,
                        quote(&t.text)
                    );
                }
            })
        }
        InferCommand::Multimodal(InferMultimodalCommand::Caption { image, generation }) => {
            let question = "Describe the image.".to_string();
            ask(&worker, model, image, question, generation, quiet, out).await
        }
        InferCommand::Multimodal(InferMultimodalCommand::Vqa { image, question, generation }) => {
            ask(&worker, model, image, question, generation, quiet, out).await
        }
        InferCommand::Multimodal(InferMultimodalCommand::Similarity { image, text }) => {
            let result = worker.image_text_similarity(model, image_source(image)?, text).await?;
            emit(&result, quiet, out, || {
                for t in &result.output.texts {
                    println!(
                        "{:>6.2}%  cosine {:+.4}  {}",
                        t.probability * 100.0,
                        t.cosine,
                        quote(&t.text)
                    );
                }
            })
        }
        InferCommand::Text(InferTextCommand::Embed {
            mut texts,
            text,
            normalize,
            no_normalize,
        }) => {
            texts.extend(text);
            let normalize = match (normalize, no_normalize) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let result = worker.embed(model, texts.clone(), normalize).await?;
            emit(&result, quiet, out, || {
                let e = &result.output;
                for (i, vector) in e.vectors.iter().enumerate() {
                    let head: Vec<String> =
                        vector.iter().take(6).map(|x| format!("{x:.5}")).collect();
                    let cut = if e.truncated[i] { ", truncated" } else { "" };
                    println!(
                        "{}: [{}, …] ({} values, {} tokens{cut})",
                        quote(&texts[i]),
                        head.join(", "),
                        e.dim,
                        e.tokens[i]
                    );
                }
            })
        }
        InferCommand::Text(InferTextCommand::Similarity { a, b }) => {
            let result = worker.similarity(model, a, b).await?;
            emit(&result, quiet, out, || println!("{:.4}", result.output.cosine))
        }
        InferCommand::Text(InferTextCommand::Generate {
            prompt,
            system,
            max_tokens,
            temperature,
            top_p,
            top_k,
            repetition_penalty,
            seed,
            stop,
            stream,
            raw,
        }) => {
            let params = GenerateParams {
                max_tokens,
                temperature,
                top_p: (top_p < 1.0).then_some(top_p),
                top_k: (top_k > 0).then_some(top_k),
                repetition_penalty,
                repeat_last_n: 64,
                seed,
                stop,
                raw,
            };
            let prompt = match system {
                Some(system) => Prompt::Chat(vec![
                    ipfs_accelerate_backends::Message::new("system", system),
                    ipfs_accelerate_backends::Message::new("user", prompt),
                ]),
                None => Prompt::Text(prompt),
            };
            if stream && !out.is_json() {
                let (tx, printer) = print_stream();
                let result = worker.generate(model, prompt, params, Some(tx)).await;
                printer.await.context("the output task failed")?;
                let result = result?;
                println!();
                summary(&result, quiet);
                Ok(())
            } else {
                let result = worker.generate(model, prompt, params, None).await?;
                emit(&result, quiet, out, || println!("{}", result.output.text))
            }
        }
    }
}

async fn audio(
    worker: &Worker,
    model: Option<&str>,
    command: InferAudioCommand,
    quiet: bool,
    out: &Output,
) -> anyhow::Result<()> {
    match command {
        InferAudioCommand::Transcribe {
            audio_file,
            language,
            task,
            timestamps,
            threads: _,
            audio_context,
        } => {
            let bytes = read_input(&audio_file)?;
            let options = TranscribeOptions {
                language,
                task: match task {
                    SpeechTaskArg::Transcribe => SpeechTask::Transcribe,
                    SpeechTaskArg::Translate => SpeechTask::Translate,
                },
                timestamps,
                audio_context,
            };
            let result = worker.transcribe(model, bytes, options).await?;
            emit(&result, quiet, out, || {
                let t = &result.output;
                if timestamps {
                    for s in &t.segments {
                        println!("[{:>7.2} → {:>7.2}] {}", s.start, s.end, s.text);
                    }
                } else {
                    println!("{}", t.text);
                }
            })
        }
        InferAudioCommand::Classify { audio_file, labels, top_k } => {
            let labels = ipfs_accelerate_worker::speech::clap::parse_labels(&labels)?;
            let bytes = read_input(&audio_file)?;
            let result = worker.classify_audio(model, bytes, labels, top_k).await?;
            emit(&result, quiet, out, || {
                for scored in &result.output.labels {
                    println!("{:>6.2}%  {}", scored.score * 100.0, scored.label);
                }
            })
        }
        InferAudioCommand::Embed { audio_file } => {
            let model =
                model.context("infer audio embed needs --model (a wav2vec2 or CLAP model)")?;
            let bytes = read_input(&audio_file)?;
            let result = worker.embed_audio(model, bytes).await?;
            emit(&result, quiet, out, || {
                let head: Vec<String> =
                    result.output.vector.iter().take(6).map(|x| format!("{x:.5}")).collect();
                println!("[{}, …] ({} values)", head.join(", "), result.output.dim);
            })
        }
        InferAudioCommand::Synthesize {
            text,
            output_file,
            voice,
            speaker,
            language,
            length_scale,
            noise_scale,
            noise_w,
        } => {
            let model = voice.as_deref().or(model);
            let options =
                SynthesizeOptions { language, speaker, length_scale, noise_scale, noise_w };
            let mut result = worker.synthesize(model, text, options).await?;
            // Through the store: the file is written atomically and the output has a CID.
            let store = worker.registry().store();
            let wav = std::mem::take(&mut result.output.wav);
            let added = store.add(AddInput::Bytes(wav), AddOptions::default()).await?;
            store.get_to_path(&added.root, Range::default(), &output_file).await?;
            let body = serde_json::json!({ "file": output_file, "cid": added.root.to_string(), "result": &result });
            out.emit(&body, || {
                let s = &result.output;
                println!(
                    "{} ({}): {:.2} s at {} Hz, {} sentence{}",
                    output_file.display(),
                    added.root,
                    s.duration,
                    s.sample_rate,
                    s.sentences,
                    if s.sentences == 1 { "" } else { "s" }
                );
                summary(&result, quiet);
            })
        }
    }
}

/// Pieces of generated text printed as they come; the sender goes to the worker.
fn print_stream() -> (tokio::sync::mpsc::Sender<String>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    let printer = tokio::spawn(async move {
        let mut stdout = std::io::stdout();
        while let Some(piece) = rx.recv().await {
            // A closed stdout (a pipe to `head`) stops the generation.
            if stdout.write_all(piece.as_bytes()).and_then(|()| stdout.flush()).is_err() {
                break;
            }
        }
    });
    (tx, printer)
}

/// `infer multimodal caption|vqa`: LLaVA answers a question about the image.
async fn ask(
    worker: &Worker,
    model: Option<&str>,
    image: ImageArg,
    question: String,
    generation: ImageTextGeneration,
    quiet: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let params = GenerateParams {
        max_tokens: generation.max_length,
        temperature: generation.temperature,
        seed: generation.seed,
        ..GenerateParams::default()
    };
    let image = image_source(image)?;
    if generation.stream && !out.is_json() {
        let (tx, printer) = print_stream();
        let result = worker.ask_image(model, image, question, params, Some(tx)).await;
        printer.await.context("the output task failed")?;
        let result = result?;
        println!();
        summary(&result, quiet);
        Ok(())
    } else {
        let result = worker.ask_image(model, image, question, params, None).await?;
        emit(&result, quiet, out, || println!("{}", result.output.text))
    }
}

/// The image a command names: a file's bytes, or the URL for the worker to fetch.
fn image_source(image: ImageArg) -> anyhow::Result<ImageSource> {
    match (image.image_file, image.image_url) {
        (Some(path), _) => Ok(ImageSource::Bytes(read_input(&path)?)),
        (None, Some(url)) => Ok(ImageSource::Url(url)),
        (None, None) => fail!(Usage, "give --image-file or --image-url"),
    }
}

/// A file the user gave as input (audio, image), read once; only its digest (in the result
/// cache key) is kept.
fn read_input(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    #[allow(clippy::disallowed_methods)]
    // storage-audit: allow(reads the input the user asked to process; persists nothing)
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The Python original's `--hardware gpu|mps` spelled as our devices.
fn device_name(value: &str) -> String {
    match value.trim().to_ascii_lowercase().as_str() {
        "gpu" => "cuda".into(),
        "mps" => "metal".into(),
        other => other.to_string(),
    }
}

fn emit<T: Serialize>(
    result: &Inference<T>,
    quiet: bool,
    out: &Output,
    human: impl FnOnce(),
) -> anyhow::Result<()> {
    out.emit(result, || {
        human();
        summary(result, quiet);
    })
}

/// One line on stderr: model, device and why, cache, time.
fn summary<T>(result: &Inference<T>, quiet: bool) {
    if quiet {
        return;
    }
    let model = result.model.name.clone().unwrap_or_else(|| result.model.cid.clone());
    let how = match (&result.device, &result.device_reason, result.cached) {
        (_, _, true) => "cached result".to_string(),
        (Some(device), Some(reason), _) => format!("{device} ({reason})"),
        _ => "unknown device".to_string(),
    };
    let t = result.timings;
    eprintln!(
        "{model} [{}] · {how} · load {:.0} ms, queue {:.0} ms, run {:.0} ms",
        result.skill, t.load_ms, t.queue_ms, t.run_ms
    );
}

fn quote(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}
