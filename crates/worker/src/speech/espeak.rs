//! Phonemes from espeak-ng, opened at run time (`libespeak-ng.so.1`), as Piper does it.
//!
//! Debian's espeak-ng 1.51 lacks `espeak_TextToPhonemesWithTerminator` (Piper's fork adds
//! it), so clauses are split here — at `. , ! ? ; :` followed by space or the end — and each
//! clause's punctuation is put back after its phonemes, a space after `, ; :`, a sentence
//! ending at `. ! ?`. Checked against piper-tts 1.8's own phonemizer character for character.
//!
//! espeak-ng keeps global state (the voice, its tables) and is not thread-safe: every call
//! holds one process-wide lock.
#![allow(unsafe_code)] // The three calls into espeak-ng's C API; see each SAFETY note.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

const LIBRARIES: [&str; 2] = ["libespeak-ng.so.1", "libespeak-ng.so"];
/// `AUDIO_OUTPUT_SYNCHRONOUS`: no audio device, no thread.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const ESPEAK_CHARS_UTF8: c_int = 1;
const ESPEAK_PHONEMES_IPA: c_int = 0x02;

type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceByName = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemes = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;

struct Espeak {
    // Keeps the library mapped for the function pointers below.
    _library: libloading::Library,
    set_voice: SetVoiceByName,
    text_to_phonemes: TextToPhonemes,
    voice: Option<String>,
}

fn espeak() -> Result<&'static Mutex<Espeak>> {
    static ESPEAK: OnceLock<std::result::Result<Mutex<Espeak>, String>> = OnceLock::new();
    ESPEAK.get_or_init(open).as_ref().map_err(|e| Error::Inference(e.clone()))
}

fn open() -> std::result::Result<Mutex<Espeak>, String> {
    let mut errors = Vec::new();
    for name in LIBRARIES {
        // SAFETY: loading espeak-ng runs no initialisers with preconditions of ours.
        match unsafe { libloading::Library::new(name) } {
            Ok(library) => {
                // SAFETY: the types match espeak-ng's `speak_lib.h` (stable C API since 1.48).
                let (initialize, set_voice, text_to_phonemes) = unsafe {
                    let init: Initialize =
                        *library.get(b"espeak_Initialize\0").map_err(|e| e.to_string())?;
                    let voice: SetVoiceByName =
                        *library.get(b"espeak_SetVoiceByName\0").map_err(|e| e.to_string())?;
                    let phon: TextToPhonemes =
                        *library.get(b"espeak_TextToPhonemes\0").map_err(|e| e.to_string())?;
                    (init, voice, phon)
                };
                // SAFETY: called once, before any other espeak call; a null path means its
                // installed data directory.
                let rate = unsafe { initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, std::ptr::null(), 0) };
                if rate <= 0 {
                    return Err(
                        "espeak-ng failed to initialise (is its data, espeak-ng-data, installed?)"
                            .into(),
                    );
                }
                return Ok(Mutex::new(Espeak {
                    _library: library,
                    set_voice,
                    text_to_phonemes,
                    voice: None,
                }));
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(format!(
        "espeak-ng is not installed, and Piper voices need it for phonemes (Debian: apt-get install libespeak-ng1): {}",
        errors.join("; ")
    ))
}

/// The phonemes of `text` in `voice` (espeak's voice name, `en-us`), one string per
/// sentence.
pub(crate) fn phonemize(text: &str, voice: &str) -> Result<Vec<String>> {
    let lock = espeak()?;
    let mut espeak = lock.lock().map_err(|_| Error::Inference("espeak-ng lock poisoned".into()))?;
    if espeak.voice.as_deref() != Some(voice) {
        let name =
            CString::new(voice).map_err(|_| Error::InvalidInput(format!("voice {voice:?}")))?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let status = unsafe { (espeak.set_voice)(name.as_ptr()) };
        if status != 0 {
            return Err(Error::InvalidInput(format!(
                "espeak-ng has no voice {voice:?} (status {status})"
            )));
        }
        espeak.voice = Some(voice.to_string());
    }
    let mut sentences = Vec::new();
    let mut sentence = String::new();
    for (clause, terminator) in clauses(text) {
        let c_clause = CString::new(clause)
            .map_err(|_| Error::InvalidInput("text contains a NUL character".into()))?;
        let mut pointer = c_clause.as_ptr().cast::<c_void>();
        while !pointer.is_null() {
            // SAFETY: `pointer` points into `c_clause` (alive for the loop) or is advanced by
            // espeak within it, or set to null at its end; the returned buffer is espeak's
            // own and copied before the next call.
            let phonemes = unsafe {
                (espeak.text_to_phonemes)(&mut pointer, ESPEAK_CHARS_UTF8, ESPEAK_PHONEMES_IPA)
            };
            if phonemes.is_null() {
                break;
            }
            // SAFETY: espeak returns a NUL-terminated string.
            sentence.push_str(&unsafe { CStr::from_ptr(phonemes) }.to_string_lossy());
        }
        if let Some(t) = terminator {
            sentence.push(t);
            if matches!(t, ',' | ':' | ';') {
                sentence.push(' ');
            }
        }
        if terminator.is_none_or(|t| matches!(t, '.' | '!' | '?')) {
            let done = strip_language_flags(std::mem::take(&mut sentence));
            if !done.trim().is_empty() {
                sentences.push(done);
            }
        }
    }
    let rest = strip_language_flags(sentence);
    if !rest.trim().is_empty() {
        sentences.push(rest);
    }
    Ok(sentences)
}

/// Clauses and the punctuation that ended each (`None` for the text's unpunctuated end).
fn clauses(text: &str) -> Vec<(String, Option<char>)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '.' | ',' | '!' | '?' | ';' | ':')
            && chars.peek().is_none_or(|n| n.is_whitespace())
        {
            if !current.trim().is_empty() {
                out.push((current.trim().to_string(), Some(c)));
            }
            current.clear();
        } else {
            current.push(c);
        }
    }
    if !current.trim().is_empty() {
        out.push((current.trim().to_string(), None));
    }
    out
}

/// Removes espeak's language-switch marks (`(en)`, `(fr)`).
fn strip_language_flags(phonemes: String) -> String {
    if !phonemes.contains('(') {
        return phonemes;
    }
    let mut out = String::with_capacity(phonemes.len());
    let mut depth = 0;
    for c in phonemes.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_split_at_punctuation_followed_by_space() {
        assert_eq!(
            clauses("Hello from the test, written in Rust. Version 1.5 works"),
            vec![
                ("Hello from the test".to_string(), Some(',')),
                ("written in Rust".to_string(), Some('.')),
                ("Version 1.5 works".to_string(), None),
            ]
        );
        assert_eq!(strip_language_flags("(en)həlˈoʊ(fr)".into()), "həlˈoʊ");
    }
}
