//! Log-mel spectrograms as Hugging Face's `audio_utils` computes them (`mel_filter_bank`,
//! `spectrogram`, `power_to_db`), so features match the Python processors: a periodic Hann
//! window, centred frames with reflect padding, a one-sided FFT in f64, the power spectrum,
//! triangular mel filters (HTK or Slaney scale, optional Slaney area normalisation), and
//! decibels floored at 1e-10.

use realfft::RealFftPlanner;

use crate::error::{Error, Result};

/// How hertz map to mels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MelScale {
    /// `2595 · log10(1 + f/700)` (torchaudio's default).
    Htk,
    /// Linear below 1 kHz, logarithmic above (librosa's default).
    Slaney,
}

impl MelScale {
    fn hz_to_mel(self, hz: f64) -> f64 {
        match self {
            MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
            MelScale::Slaney if hz >= MIN_LOG_HZ => MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / LOG_STEP,
            MelScale::Slaney => hz / F_SP,
        }
    }

    fn mel_to_hz(self, mel: f64) -> f64 {
        match self {
            MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
            MelScale::Slaney if mel >= MIN_LOG_MEL => {
                MIN_LOG_HZ * (LOG_STEP * (mel - MIN_LOG_MEL)).exp()
            }
            MelScale::Slaney => F_SP * mel,
        }
    }
}

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
// ln(6.4) / 27, librosa's step above 1 kHz.
const LOG_STEP: f64 = 0.068_751_777_420_949_12;

/// A bank of triangular mel filters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MelBank {
    /// FFT bins, `n_fft / 2 + 1`.
    pub frequency_bins: usize,
    /// Filters.
    pub mels: usize,
    /// The lowest frequency, Hz.
    pub min_hz: f64,
    /// The highest frequency, Hz.
    pub max_hz: f64,
    /// The sample rate the FFT bins span half of.
    pub sample_rate: u32,
    /// The mel scale.
    pub scale: MelScale,
    /// Slaney area normalisation (each filter scaled by 2 / its width in Hz).
    pub slaney_norm: bool,
}

impl MelBank {
    /// The weights, `mels` rows of `frequency_bins` (HF `mel_filter_bank`, transposed).
    pub fn weights(&self) -> Vec<f64> {
        let (low, high) = (self.scale.hz_to_mel(self.min_hz), self.scale.hz_to_mel(self.max_hz));
        let edges: Vec<f64> = (0..self.mels + 2)
            .map(|i| self.scale.mel_to_hz(low + (high - low) * i as f64 / (self.mels + 1) as f64))
            .collect();
        let nyquist = f64::from(self.sample_rate / 2);
        let last = (self.frequency_bins.max(2) - 1) as f64;
        let mut weights = vec![0f64; self.mels * self.frequency_bins];
        for m in 0..self.mels {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = if self.slaney_norm { 2.0 / (hi - lo) } else { 1.0 };
            for k in 0..self.frequency_bins {
                let f = nyquist * k as f64 / last;
                let rising = (f - lo) / (mid - lo);
                let falling = (hi - f) / (hi - mid);
                weights[m * self.frequency_bins + k] = rising.min(falling).max(0.0) * norm;
            }
        }
        weights
    }
}

/// A short-time Fourier transform's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stft {
    /// The FFT and window length.
    pub n_fft: usize,
    /// Samples between frames.
    pub hop: usize,
}

impl Stft {
    /// Frames for `samples` samples with centred (reflect-padded) frames.
    pub fn frames(&self, samples: usize) -> usize {
        1 + samples / self.hop
    }

    /// The log-mel spectrogram of `samples` in dB (`10·log10(max(power·filters, 1e-10))`),
    /// row-major `frames × bank.mels`. Reflect padding needs more samples than half a window:
    /// shorter input is zero-padded first (HF would fail on it).
    pub fn log_mel(&self, samples: &[f32], bank: &MelBank) -> Result<Vec<f32>> {
        let half = self.n_fft / 2;
        let mut input: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
        if input.len() <= half {
            input.resize(half + 1, 0.0);
        }
        let n = input.len();
        let mut padded = Vec::with_capacity(n + 2 * half);
        padded.extend((1..=half).rev().map(|i| input[i]));
        padded.extend_from_slice(&input);
        padded.extend((0..half).map(|i| input[n - 2 - i]));

        // HF's periodic Hann window.
        let window: Vec<f64> = (0..self.n_fft)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / self.n_fft as f64).cos())
            .collect();
        let filters = bank.weights();
        let bins = self.n_fft / 2 + 1;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(self.n_fft);
        let mut frame = fft.make_input_vec();
        let mut spectrum = fft.make_output_vec();
        let mut power = vec![0f64; bins];
        let frames = self.frames(samples.len().max(half + 1));
        let mut out = Vec::with_capacity(frames * bank.mels);
        for t in 0..frames {
            let start = t * self.hop;
            for (i, value) in frame.iter_mut().enumerate() {
                *value = padded.get(start + i).copied().unwrap_or(0.0) * window[i];
            }
            fft.process(&mut frame, &mut spectrum)
                .map_err(|e| Error::Inference(format!("the FFT failed: {e}")))?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            let width = bank.frequency_bins;
            for m in 0..bank.mels {
                let row = &filters[m * width..(m + 1) * width];
                let energy: f64 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
                out.push((10.0 * energy.max(1e-10).log10()) as f32);
            }
        }
        Ok(out)
    }
}

/// Linear interpolation of `rows × cols` row-major data along the rows to `to` rows, as
/// PyTorch's bilinear `interpolate(align_corners=False)` does when the columns keep their size.
pub fn shrink_rows(data: &[f32], rows: usize, cols: usize, to: usize) -> Vec<f32> {
    let scale = rows as f32 / to as f32;
    let mut out = Vec::with_capacity(to * cols);
    for i in 0..to {
        let source = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
        let lower = (source.floor() as usize).min(rows - 1);
        let upper = (lower + 1).min(rows - 1);
        let lambda = source - lower as f32;
        for c in 0..cols {
            let (a, b) = (data[lower * cols + c], data[upper * cols + c]);
            out.push(a * (1.0 - lambda) + b * lambda);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htk_and_slaney_round_trip() {
        for scale in [MelScale::Htk, MelScale::Slaney] {
            for hz in [0.0, 440.0, 1000.0, 7999.0, 14_000.0] {
                assert!((scale.mel_to_hz(scale.hz_to_mel(hz)) - hz).abs() < 1e-6, "{scale:?} {hz}");
            }
        }
        assert!((LOG_STEP - 6.4f64.ln() / 27.0).abs() < 1e-15);
    }

    #[test]
    fn a_tone_peaks_in_its_mel_band() {
        let rate = 16_000;
        let samples: Vec<f32> = (0..rate)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin())
            .collect();
        let bank = MelBank {
            frequency_bins: 201,
            mels: 40,
            min_hz: 0.0,
            max_hz: 8000.0,
            sample_rate: rate,
            scale: MelScale::Htk,
            slaney_norm: false,
        };
        let stft = Stft { n_fft: 400, hop: 160 };
        let mel = stft.log_mel(&samples, &bank).unwrap();
        assert_eq!(mel.len(), stft.frames(samples.len()) * 40);
        let frame = &mel[50 * 40..51 * 40];
        let loudest = frame.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        // 1 kHz is 1000 HTK mels of 2840 at 8 kHz: filter ≈ 40·1000/2840 − 1 ≈ 13.
        assert!(matches!(loudest, Some(12..=14)), "{loudest:?}");
    }
}
