//! Kubo's known-answer vectors (`fixtures/kubo-cids.json`, copied from `shared/fixtures`) and
//! its deterministic byte generator.

use std::io::Read;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};

/// Kubo's deterministic test bytes: ChaCha20 (IETF, zero nonce, counter 0) keystream under key
/// SHA-256(seed), as a stream of `size` bytes (`shared/fixtures/kubo-cids.json`).
pub struct KuboBytes {
    cipher: chacha20::ChaCha20,
    remaining: u64,
}

impl KuboBytes {
    pub fn new(seed: &str, size: u64) -> Self {
        let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
        let nonce = [0u8; 12];
        KuboBytes { cipher: chacha20::ChaCha20::new(&key.into(), &nonce.into()), remaining: size }
    }
}

impl Read for KuboBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.cipher.apply_keystream(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A Kubo vector from the fixture file.
pub struct Vector {
    pub profile: String,
    pub input: Input,
    pub cid: String,
}

pub enum Input {
    Literal(String),
    Seeded { seed: String, size: u64 },
}

impl Vector {
    pub fn reader(&self) -> Box<dyn Read + Send> {
        match &self.input {
            Input::Literal(text) => Box::new(std::io::Cursor::new(text.clone().into_bytes())),
            Input::Seeded { seed, size } => Box::new(KuboBytes::new(seed, *size)),
        }
    }

    pub fn size(&self) -> u64 {
        match &self.input {
            Input::Literal(text) => text.len() as u64,
            Input::Seeded { size, .. } => *size,
        }
    }
}

/// Every vector in the fixture.
pub fn vectors() -> Vec<Vector> {
    let text = include_str!("fixtures/kubo-cids.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let input = &v["input"];
            let input = match input["literal"].as_str() {
                Some(text) => Input::Literal(text.to_string()),
                None => Input::Seeded {
                    seed: input["seed"].as_str().unwrap().to_string(),
                    size: parse_binary_size(input["size"].as_str().unwrap()),
                },
            };
            Vector {
                profile: v["profile"].as_str().unwrap().to_string(),
                input,
                cid: v["cid"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

fn parse_binary_size(text: &str) -> u64 {
    let (number, shift) = if let Some(n) = text.strip_suffix("GiB") {
        (n, 30)
    } else if let Some(n) = text.strip_suffix("MiB") {
        (n, 20)
    } else if let Some(n) = text.strip_suffix("KiB") {
        (n, 10)
    } else {
        (text, 0)
    };
    number.parse::<u64>().unwrap() << shift
}

/// The fixture's own check of the generator.
pub fn generator_check() -> (String, String) {
    let text = include_str!("fixtures/kubo-cids.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let check = &json["generator"]["first16_hex"];
    (check["seed"].as_str().unwrap().to_string(), check["hex"].as_str().unwrap().to_string())
}
