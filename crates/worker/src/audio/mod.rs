//! Audio in and out: decoding (WAV, FLAC, OGG/Vorbis, MP3 through symphonia), downmixing to
//! mono, resampling (rubato) and WAV output (hound).
//!
//! Unreadable, empty or over-long input is an error naming what is wrong — never a
//! substitute (the Python original transcribed a second of silence when it could not read
//! the file).

pub mod mel;

use std::io::Cursor;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as DecodeError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::error::{Error, Result};

/// Mono samples in [-1, 1] at a sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// The samples.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Audio {
    /// Its length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }

    /// The same audio at `rate` (itself when already there).
    pub fn resampled(self, rate: u32) -> Result<Audio> {
        if self.sample_rate == rate {
            return Ok(self);
        }
        let samples = resample(&self.samples, self.sample_rate, rate)?;
        Ok(Audio { samples, sample_rate: rate })
    }

    /// As a 16-bit PCM mono WAV file.
    pub fn to_wav(&self) -> Result<Vec<u8>> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: self.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::with_capacity(44 + self.samples.len() * 2));
        let failed = |e: hound::Error| Error::Inference(format!("writing WAV: {e}"));
        let mut writer = hound::WavWriter::new(&mut out, spec).map_err(failed)?;
        for s in &self.samples {
            let v = (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
            writer.write_sample(v).map_err(failed)?;
        }
        writer.finalize().map_err(failed)?;
        Ok(out.into_inner())
    }
}

/// The highest sample rate read (studio masters go to 384 kHz).
pub const MAX_SAMPLE_RATE: u32 = 384_000;

/// Decodes an audio file's bytes to mono (channels averaged), refusing more than
/// `max_seconds` of it.
pub fn decode(bytes: Vec<u8>, max_seconds: f64) -> Result<Audio> {
    if bytes.is_empty() {
        return Err(Error::InvalidInput("the audio file is empty (0 bytes)".into()));
    }
    let invalid = |what: &str, e: DecodeError| match e {
        DecodeError::Unsupported(feature) => {
            Error::InvalidInput(format!("unsupported audio ({what}): {feature}"))
        }
        e => Error::InvalidInput(format!("not readable audio ({what}): {e}")),
    };
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), stream, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| match e {
            // No container recognised the bytes at all.
            DecodeError::Unsupported(reason) if reason.contains("no suitable format reader") => {
                Error::InvalidInput(
                    "not an audio file this build reads (WAV, FLAC, OGG/Vorbis or MP3)".into(),
                )
            }
            // A known container with an encoding no decoder here has.
            DecodeError::Unsupported(reason) => Error::InvalidInput(format!(
                "unsupported audio encoding ({reason}); WAV (PCM, float, ADPCM), FLAC, OGG/Vorbis and MP3 are read"
            )),
            e => invalid("container", e),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| Error::InvalidInput("the file has no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| invalid("codec", e))?;
    let mut sample_rate = track.codec_params.sample_rate;
    let mut samples: Vec<f32> = Vec::new();
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(DecodeError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(DecodeError::ResetRequired) => break,
            Err(e) => return Err(invalid("stream", e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged frame is skipped, as players do; a file of nothing but damage ends
            // up empty and is refused below.
            Err(DecodeError::DecodeError(reason)) => {
                tracing::warn!(reason, "skipping an undecodable audio frame");
                continue;
            }
            Err(e) => return Err(invalid("frame", e)),
        };
        let spec = *decoded.spec();
        // The length limit is in seconds, scaled by this rate: a rate read from the file must
        // be bounded too, or a 4 GHz header would make the limit meaningless.
        if spec.rate > MAX_SAMPLE_RATE {
            return Err(Error::InvalidInput(format!(
                "the audio's sample rate of {} Hz is above the {MAX_SAMPLE_RATE} Hz this build reads",
                spec.rate
            )));
        }
        sample_rate = Some(spec.rate);
        let channels = spec.channels.count().max(1);
        let buf = match &mut buffer {
            Some(buf) if buf.capacity() >= decoded.capacity() * channels => buf,
            slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        samples.extend(
            buf.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        if samples.len() as f64 > max_seconds * f64::from(spec.rate) {
            return Err(Error::InvalidInput(format!(
                "the audio is longer than the limit of {max_seconds} s ([worker] max_audio_seconds)"
            )));
        }
    }
    let sample_rate = sample_rate
        .filter(|r| *r > 0)
        .ok_or_else(|| Error::InvalidInput("the audio has no sample rate".into()))?;
    if samples.is_empty() {
        return Err(Error::InvalidInput("the audio has no samples (zero length)".into()));
    }
    Ok(Audio { samples, sample_rate })
}

/// Resamples mono `samples` from `from` Hz to `to` Hz (band-limited, FFT-based), keeping
/// the length in time and aligning the output with the input (the resampler's delay is cut).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    const CHUNK: usize = 1024;
    let failed =
        |e: &dyn std::fmt::Display| Error::Inference(format!("resampling {from} → {to} Hz: {e}"));
    let mut resampler =
        FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1).map_err(|e| failed(&e))?;
    let expected = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut chunks = samples.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        out.extend_from_slice(&resampler.process(&[chunk], None).map_err(|e| failed(&e))?[0]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        out.extend_from_slice(
            &resampler.process_partial(Some(&[rest]), None).map_err(|e| failed(&e))?[0],
        );
    }
    while out.len() < expected + delay {
        let flushed = resampler.process_partial::<&[f32]>(None, None).map_err(|e| failed(&e))?;
        if flushed[0].is_empty() {
            break;
        }
        out.extend_from_slice(&flushed[0]);
    }
    let end = (delay + expected).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

/// Scales `samples` so the loudest is at `peak` (silence is left alone).
pub fn normalize_peak(samples: &mut [f32], peak: f32) {
    let max = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    if max > f32::EPSILON {
        let gain = peak / max;
        samples.iter_mut().for_each(|s| *s *= gain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, seconds: f32, hz: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    fn wav(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).expect("writer");
        for s in samples {
            w.write_sample(*s).expect("sample");
        }
        w.finalize().expect("finalize");
        out.into_inner()
    }

    #[test]
    fn a_wav_round_trips_and_stereo_is_averaged() {
        let audio = Audio { samples: tone(16_000, 0.5, 440.0), sample_rate: 16_000 };
        let back = decode(audio.to_wav().expect("wav"), 60.0).expect("decodes");
        assert_eq!(back.sample_rate, 16_000);
        assert_eq!(back.samples.len(), audio.samples.len());
        let err = back
            .samples
            .iter()
            .zip(&audio.samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "{err}");

        let stereo = wav(&[1000, 3000, -2000, 0], 8000, 2);
        let mono = decode(stereo, 60.0).expect("decodes");
        let expected = [2000.0 / 32768.0, -1000.0 / 32768.0];
        for (a, b) in mono.samples.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn resampling_keeps_duration_frequency_and_alignment() {
        let input = tone(22_050, 1.0, 440.0);
        let out = resample(&input, 22_050, 16_000).expect("resamples");
        assert_eq!(out.len(), 16_000);
        let expected = tone(16_000, 1.0, 440.0);
        // Away from the edges, the resampled tone is the tone sampled at 16 kHz.
        let err = out[800..15_200]
            .iter()
            .zip(&expected[800..15_200])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 0.01, "max error {err}");
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let empty = decode(Vec::new(), 60.0).expect_err("empty").to_string();
        assert!(empty.contains("empty"), "{empty}");
        let text = decode(b"this is not audio at all, just some text".to_vec(), 60.0)
            .expect_err("text")
            .to_string();
        assert!(text.contains("not an audio file"), "{text}");
        let zero = decode(wav(&[], 16_000, 1), 60.0).expect_err("zero length").to_string();
        assert!(zero.contains("no samples"), "{zero}");
        let long =
            decode(wav(&vec![0; 16_000 * 3], 16_000, 1), 2.0).expect_err("too long").to_string();
        assert!(long.contains("longer than the limit"), "{long}");
        // A WAV whose format tag is no codec this build has (0x1234).
        let mut odd = wav(&[0; 100], 16_000, 1);
        odd[20..22].copy_from_slice(&0x1234u16.to_le_bytes());
        let odd = decode(odd, 60.0).expect_err("unknown format").to_string();
        assert!(odd.contains("unsupported"), "{odd}");
    }
}
