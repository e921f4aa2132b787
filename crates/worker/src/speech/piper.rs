//! Text to speech with Piper voices: VITS graphs on ONNX Runtime (`ort`, the library opened at
//! run time), phonemes from espeak-ng, ids from the voice's `phoneme_id_map`.
//!
//! Per sentence, as piper-tts does it: espeak IPA phonemes → NFD code points → ids
//! `^ _ (p _)* $` (unknown phonemes skipped) → the graph (`input`, `input_lengths`, `scales`
//! = [noise_scale, length_scale, noise_w], `sid` for multi-speaker voices) → samples peak-
//! normalised; sentences are concatenated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::value::Tensor;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::audio::{self, Audio};
use crate::error::{Error, Result};
use crate::manifest::{Format, Manifest};
use crate::skill::{Cancel, LoadContext, Loaded, ModelFiles, Skill, SkillInfo, Task};

/// A voice's `.onnx.json`, the parts synthesis reads.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceConfig {
    /// Output sample rate.
    pub sample_rate: u32,
    /// espeak-ng's voice for the phonemes (`en-us`).
    pub espeak_voice: String,
    /// Default noise scale.
    pub noise_scale: f32,
    /// Default length scale (speaking rate: larger is slower).
    pub length_scale: f32,
    /// Default phoneme-width noise.
    pub noise_w: f32,
    /// Speakers of a multi-speaker voice (name → id).
    pub speakers: HashMap<String, i64>,
    /// Speaker count.
    pub num_speakers: usize,
    /// Phoneme (one code point) → ids.
    pub phoneme_ids: HashMap<char, Vec<i64>>,
    /// The license, when the config says.
    pub license: Option<String>,
    /// The language it speaks (`en-US`): the config's `language.code`, else espeak's voice.
    pub language: String,
}

#[derive(Deserialize)]
struct RawConfig {
    audio: RawAudio,
    #[serde(default)]
    espeak: Option<RawEspeak>,
    #[serde(default)]
    inference: Option<RawInference>,
    #[serde(default)]
    phoneme_type: Option<String>,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    num_speakers: Option<usize>,
    #[serde(default)]
    speaker_id_map: HashMap<String, i64>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    language: Option<RawLanguage>,
}

#[derive(Deserialize)]
struct RawLanguage {
    code: String,
}

#[derive(Deserialize)]
struct RawAudio {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct RawEspeak {
    voice: String,
}

#[derive(Deserialize)]
struct RawInference {
    noise_scale: Option<f32>,
    length_scale: Option<f32>,
    noise_w: Option<f32>,
}

impl VoiceConfig {
    /// Parses file `file`.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<VoiceConfig> {
        let raw: RawConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid_file(file, format!("not a Piper voice config: {e}")))?;
        match raw.phoneme_type.as_deref() {
            None | Some("espeak") => {}
            Some(other) => {
                return Err(Error::invalid_file(
                    file,
                    format!("phoneme_type {other:?}: only espeak voices are supported"),
                ))
            }
        }
        if raw.audio.sample_rate == 0 {
            return Err(Error::invalid_file(file, "audio.sample_rate is 0"));
        }
        let mut phoneme_ids = HashMap::new();
        for (key, ids) in raw.phoneme_id_map {
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => {
                    phoneme_ids.insert(c, ids);
                }
                _ => {
                    return Err(Error::invalid_file(
                        file,
                        format!("phoneme {key:?} is not one code point"),
                    ))
                }
            }
        }
        for needed in ['^', '_', '$'] {
            if !phoneme_ids.contains_key(&needed) {
                return Err(Error::invalid_file(file, format!("phoneme_id_map lacks {needed:?}")));
            }
        }
        let inference = raw.inference.unwrap_or(RawInference {
            noise_scale: None,
            length_scale: None,
            noise_w: None,
        });
        let espeak_voice = raw.espeak.map_or_else(|| "en-us".into(), |e| e.voice);
        let language =
            raw.language.map_or_else(|| espeak_voice.clone(), |l| l.code).replace('_', "-");
        Ok(VoiceConfig {
            sample_rate: raw.audio.sample_rate,
            espeak_voice,
            language,
            noise_scale: inference.noise_scale.unwrap_or(0.667),
            length_scale: inference.length_scale.unwrap_or(1.0),
            noise_w: inference.noise_w.unwrap_or(0.8),
            num_speakers: raw.num_speakers.unwrap_or(1).max(1),
            speakers: raw.speaker_id_map,
            phoneme_ids,
            license: raw.license,
        })
    }

    /// Piper's ids for one sentence's phonemes: BOS, PAD after every item, EOS.
    pub fn ids(&self, phonemes: &str) -> Vec<i64> {
        let id = |c: char| self.phoneme_ids.get(&c).map(Vec::as_slice).unwrap_or_default();
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        ids.extend_from_slice(id('^'));
        ids.extend_from_slice(id('_'));
        for c in phonemes.nfd() {
            if let Some(p) = self.phoneme_ids.get(&c) {
                ids.extend_from_slice(p);
                ids.extend_from_slice(id('_'));
            }
        }
        ids.extend_from_slice(id('$'));
        ids
    }
}

/// Synthesis settings; the voice's defaults where `None`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SynthesizeOptions {
    /// The language the caller expects (`en`, `en-US`): a voice speaks one, so another is an
    /// error, not text read with the wrong phonemes.
    pub language: Option<String>,
    /// Speaker (name or numeric id) of a multi-speaker voice.
    pub speaker: Option<String>,
    /// Speaking rate as a length scale: 1 normal, 2 twice as slow.
    pub length_scale: Option<f32>,
    /// Voice variation.
    pub noise_scale: Option<f32>,
    /// Phoneme-duration variation.
    pub noise_w: Option<f32>,
}

/// Synthesised speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    /// The audio.
    pub audio: Audio,
    /// Sentences spoken.
    pub sentences: usize,
    /// The phonemes, one string per sentence.
    pub phonemes: Vec<String>,
}

/// The Piper text-to-speech skill.
#[derive(Debug, Clone, Copy)]
pub struct PiperSkill;

impl Skill for PiperSkill {
    fn info(&self) -> SkillInfo {
        SkillInfo {
            name: "piper",
            task: Task::SpeechSynthesis,
            families: &["piper"],
            formats: &[Format::Onnx],
            devices: vec!["cpu".into()],
            limits: "text up to 10,000 characters; espeak-ng phonemes (libespeak-ng1 at run time)",
            output: "16-bit mono WAV at the voice's sample rate",
        }
    }

    fn accepts(&self, manifest: &Manifest) -> std::result::Result<(), String> {
        match (manifest.info.family.as_str(), manifest.info.format) {
            ("piper", Format::Onnx) => Ok(()),
            (family, format) => {
                Err(format!("a {family} model in {} is not a Piper voice", format.name()))
            }
        }
    }

    fn files(&self, manifest: &Manifest) -> Vec<String> {
        vec![manifest.info.weights.clone(), format!("{}.json", manifest.info.weights)]
    }

    fn load(
        &self,
        manifest: &Manifest,
        mut files: ModelFiles,
        context: &LoadContext,
    ) -> Result<std::sync::Arc<dyn Loaded>> {
        let weights = &manifest.info.weights;
        let config_file = format!("{weights}.json");
        let config = VoiceConfig::parse(&config_file, &files.take(&config_file)?)?;
        let graph = files.take(weights)?;
        let environment = runtime(context.onnxruntime.as_deref())?;
        let session = Session::builder(environment)
            .and_then(|b| b.with_intra_threads(context.threads.max(1)).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(&graph))
            .map_err(|e| {
                Error::invalid_file(weights, format!("ONNX Runtime cannot load it: {e}"))
            })?;
        Ok(std::sync::Arc::new(Synthesizer {
            session: Mutex::new(session),
            config,
            bytes: graph.len() as u64 * 2,
        }))
    }
}

crate::capability::loaded!(Synthesizer: synthesizer -> Synthesize);

impl crate::capability::Synthesize for Synthesizer {
    fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
        cancel: &Cancel,
    ) -> Result<Speech> {
        Synthesizer::synthesize(self, text, options, cancel)
    }
}

/// The ONNX Runtime library, opened once per process: the path the worker resolved
/// (`[worker] onnxruntime`, or the library copied out of the store), else `ORT_DYLIB_PATH`.
fn runtime(configured: Option<&Path>) -> Result<&'static ort::environment::Environment> {
    // ONNX Runtime allows one environment per process: the first library opened is kept.
    type Opened = (PathBuf, std::result::Result<ort::environment::Environment, String>);
    static RUNTIME: OnceLock<Opened> = OnceLock::new();
    let path: Option<PathBuf> = configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    let Some(path) = path else {
        return Err(Error::Device(
            "ONNX Runtime is not configured: import the onnxruntime wheel as a model (`ipfs-accelerate models import onnxruntime-….whl --name onnxruntime`; `cargo xtask models fetch` does), or set [worker] onnxruntime or ORT_DYLIB_PATH to libonnxruntime.so".into(),
        ));
    };
    let (opened, environment) = RUNTIME.get_or_init(|| {
        tracing::info!(library = %path.display(), "opening ONNX Runtime");
        let environment = ort::init_from(&path)
            .map_err(|e| format!("cannot open ONNX Runtime at {}: {e}", path.display()))
            .and_then(|builder| {
                builder
                    .with_name("ipfs-accelerate")
                    .build()
                    .map_err(|e| format!("ONNX Runtime at {}: {e}", path.display()))
            });
        (path.clone(), environment)
    });
    if *opened != path {
        return Err(Error::Device(format!(
            "this process already opened ONNX Runtime from {}; it cannot open {} too",
            opened.display(),
            path.display()
        )));
    }
    environment.as_ref().map_err(|e| Error::Device(e.clone()))
}

/// A loaded Piper voice.
pub struct Synthesizer {
    // `Session::run` takes `&mut self`.
    session: Mutex<Session>,
    config: VoiceConfig,
    bytes: u64,
}

impl std::fmt::Debug for Synthesizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synthesizer").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The longest text one request may synthesise.
pub const MAX_TEXT_CHARS: usize = 10_000;

impl Synthesizer {
    /// Resident bytes (the graph and ONNX Runtime's copy of its weights).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// The voice's settings.
    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// Speaks `text`.
    pub fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
        cancel: &Cancel,
    ) -> Result<Speech> {
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("the text to speak is empty".into()));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(Error::InvalidInput(format!(
                "the text is longer than {MAX_TEXT_CHARS} characters"
            )));
        }
        if let Some(language) = &options.language {
            let spoken = self.config.language.to_lowercase();
            if !spoken.starts_with(&language.to_lowercase().replace('_', "-")) {
                return Err(Error::InvalidInput(format!(
                    "the voice speaks {}, not {language}: choose a voice for {language}",
                    self.config.language
                )));
            }
        }
        let speaker = self.speaker(options.speaker.as_deref())?;
        let scales = [
            options.noise_scale.unwrap_or(self.config.noise_scale),
            options.length_scale.unwrap_or(self.config.length_scale),
            options.noise_w.unwrap_or(self.config.noise_w),
        ];
        if scales.iter().any(|s| !s.is_finite() || *s < 0.0) || scales[1] == 0.0 {
            return Err(Error::InvalidInput(format!(
                "scales must be finite, non-negative and length_scale > 0 (got {scales:?})"
            )));
        }
        let phonemes = super::espeak::phonemize(text, &self.config.espeak_voice)?;
        if phonemes.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to speak: the text has no pronounceable words".into(),
            ));
        }
        let mut samples = Vec::new();
        for sentence in &phonemes {
            cancel.check()?;
            let mut chunk = self.run(&self.config.ids(sentence), scales, speaker)?;
            audio::normalize_peak(&mut chunk, 1.0);
            samples.extend_from_slice(&chunk);
        }
        Ok(Speech {
            audio: Audio { samples, sample_rate: self.config.sample_rate },
            sentences: phonemes.len(),
            phonemes,
        })
    }

    fn speaker(&self, speaker: Option<&str>) -> Result<Option<i64>> {
        if self.config.num_speakers <= 1 {
            return match speaker {
                None => Ok(None),
                Some(s) => Err(Error::InvalidInput(format!(
                    "this voice has one speaker; --speaker {s:?} does not apply"
                ))),
            };
        }
        let Some(speaker) = speaker else { return Ok(Some(0)) };
        if let Some(id) = self.config.speakers.get(speaker) {
            return Ok(Some(*id));
        }
        match speaker.parse::<i64>() {
            Ok(id) if (0..self.config.num_speakers as i64).contains(&id) => Ok(Some(id)),
            _ => {
                let mut names: Vec<&String> = self.config.speakers.keys().collect();
                names.sort();
                Err(Error::InvalidInput(format!(
                    "no speaker {speaker:?} in this voice (0..{} or one of {names:?})",
                    self.config.num_speakers
                )))
            }
        }
    }

    fn run(&self, ids: &[i64], scales: [f32; 3], speaker: Option<i64>) -> Result<Vec<f32>> {
        let failed = |e: ort::Error| Error::Inference(format!("ONNX Runtime: {e}"));
        let n = ids.len();
        let mut inputs = ort::inputs![
            "input" => Tensor::from_array(([1usize, n], ids.to_vec())).map_err(failed)?,
            "input_lengths" => Tensor::from_array(([1usize], vec![n as i64])).map_err(failed)?,
            "scales" => Tensor::from_array(([3usize], scales.to_vec())).map_err(failed)?,
        ];
        if let Some(sid) = speaker {
            inputs.push((
                "sid".into(),
                Tensor::from_array(([1usize], vec![sid])).map_err(failed)?.into(),
            ));
        }
        let mut session =
            self.session.lock().map_err(|_| Error::Inference("voice session poisoned".into()))?;
        let outputs = session.run(inputs).map_err(failed)?;
        let (_, samples) = outputs[0].try_extract_tensor::<f32>().map_err(failed)?;
        Ok(samples.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bos_pad_phonemes_eos() {
        let config = VoiceConfig::parse(
            "v.onnx.json",
            br#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},"phoneme_type":"espeak",
                "phoneme_id_map":{"_":[0],"^":[1],"$":[2]," ":[3],"a":[4],"b":[5]}}"#,
        )
        .expect("config");
        // Unknown phonemes (x) are skipped; NFD splits precomposed characters.
        assert_eq!(config.ids("ab x"), vec![1, 0, 4, 0, 5, 0, 3, 0, 2]);
        let err = VoiceConfig::parse(
            "v.onnx.json",
            br#"{"audio":{"sample_rate":22050},"phoneme_type":"text","phoneme_id_map":{}}"#,
        )
        .expect_err("text voices");
        assert!(err.to_string().contains("only espeak"), "{err}");
    }
}
