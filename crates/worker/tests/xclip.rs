//! X-CLIP in candle against Hugging Face transformers on a tiny seeded model
//! (`tools/gen_fixtures.py xclip`): the GIF's frames through VideoMAE's PIL processor, the
//! video–text logits and embeddings; frame sampling; the worker and the errors.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use crate::common;

use candle_core::Device;
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_worker::vision::xclip::{decode_video, sample_frames};
use ipfs_accelerate_worker::vision::{DecodeLimits, XClip};
use ipfs_accelerate_worker::{ImportOptions, VideoSource, Worker, WorkerConfig};

use common::{fixtures, flat, max_diff, model_file, runtime, tensors, texts};

fn gif() -> Vec<u8> {
    std::fs::read(fixtures().join("video.gif")).unwrap()
}

#[test]
fn xclip_matches_transformers() {
    let model = XClip::load(
        &model_file("xclip", "config.json"),
        model_file("xclip", "model.safetensors"),
        Some(&model_file("xclip", "preprocessor_config.json")),
        Some(&model_file("xclip", "tokenizer.json")),
        &Device::Cpu,
    )
    .unwrap();
    let want = tensors("xclip");
    let frames =
        decode_video(&gif(), 4, DecodeLimits::default(), std::time::Duration::from_secs(5))
            .unwrap();
    assert_eq!(frames.len(), 4);
    let pixels = model.pixel_values(&frames).unwrap();
    let diff = max_diff(&flat(&pixels), &flat(&want["pixel_values"]));
    assert!(diff < 1e-6, "pixel_values differ by {diff}");

    let ids = model.tokenize(&texts("xclip")).unwrap();
    let want_ids: Vec<f32> = flat(&want["input_ids"]);
    assert_eq!(flat(&ids), want_ids);
    let logits = model.logits(&pixels, &ids).unwrap();
    let diff = max_diff(&logits, &flat(&want["logits_per_video"]));
    assert!(diff < 1e-4, "logits_per_video differ by {diff}: {logits:?}");
}

#[test]
fn frames_are_sampled_at_segment_centres() {
    assert_eq!(sample_frames(4, 4).unwrap(), [0, 1, 2, 3]);
    assert_eq!(sample_frames(100, 4).unwrap(), [12, 37, 62, 87]);
    assert_eq!(sample_frames(2, 4).unwrap(), [0, 0, 1, 1]);
    assert!(sample_frames(0, 8).is_err());
}

#[test]
fn videos_run_through_the_worker_and_bad_input_is_refused() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let worker = Worker::new(store, WorkerConfig::default());
        let options = ImportOptions { name: Some("xclip".into()), ..ImportOptions::default() };
        let model = worker.registry().import(&fixtures().join("xclip"), options).await.unwrap();
        assert_eq!(model.manifest.info.family, "xclip");

        let scored = worker
            .video_text_similarity(None, VideoSource::File(gif()), texts("xclip"))
            .await
            .unwrap();
        assert_eq!(scored.skill, "xclip");
        assert_eq!(scored.output.frames, 4);
        let logits: Vec<f32> = scored.output.texts.iter().map(|t| t.logit).collect();
        assert!(max_diff(&logits, &flat(&tensors("xclip")["logits_per_video"])) < 1e-4);

        // The same frames given as PNG files score the same as the GIF (PNG is lossless).
        let frames =
            decode_video(&gif(), 4, DecodeLimits::default(), std::time::Duration::from_secs(5))
                .unwrap();
        let files: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let mut png = Vec::new();
                f.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
                png
            })
            .collect();
        let by_frames = worker
            .video_text_similarity(None, VideoSource::Frames(files), texts("xclip"))
            .await
            .unwrap();
        let again: Vec<f32> = by_frames.output.texts.iter().map(|t| t.logit).collect();
        assert!(max_diff(&again, &logits) < 1e-6);

        // Not a video: without ffmpeg on PATH the error names the missing tool.
        let err = worker
            .video_text_similarity(None, VideoSource::File(b"not a video".to_vec()), texts("xclip"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("ffmpeg") || err.contains("video"), "{err}");
        let err = worker
            .video_text_similarity(None, VideoSource::Frames(vec![]), texts("xclip"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no frames"), "{err}");
        let err =
            worker.video_text_similarity(None, VideoSource::File(gif()), vec![]).await.unwrap_err();
        assert!(err.to_string().contains("text"), "{err}");
    });
}

/// A real video file through ffmpeg, when ffmpeg is installed (Debian's `ffmpeg`; CI does not
/// install it, and says so): made from the fixture GIF by ffmpeg itself, then decoded at the
/// model's 4 segment centres and scored.
#[test]
fn a_video_file_decodes_through_ffmpeg_when_installed() {
    let ffmpeg = std::process::Command::new("ffmpeg").arg("-version").output();
    if !ffmpeg.is_ok_and(|o| o.status.success()) {
        eprintln!("ffmpeg check: skipped (ffmpeg is not installed)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("video.mp4");
    let status = std::process::Command::new("timeout")
        .args(["60", "ffmpeg", "-v", "error", "-i"])
        .arg(fixtures().join("video.gif"))
        .args(["-pix_fmt", "yuv420p", "-vf", "scale=48:40"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&video).unwrap();
    let frames =
        decode_video(&bytes, 4, DecodeLimits::default(), std::time::Duration::from_secs(30))
            .unwrap();
    assert_eq!(frames.len(), 4);
    assert!(frames.iter().all(|f| (f.width(), f.height()) == (48, 40)));
    // Lossy (H.264), so close to the GIF's frames rather than equal: the mean absolute
    // difference per channel stays small, and each frame matches its own GIF frame best.
    let gif = decode_video(&gif(), 4, DecodeLimits::default(), std::time::Duration::from_secs(5))
        .unwrap();
    let distance = |a: &image::RgbImage, b: &image::RgbImage| -> f64 {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
            .sum::<f64>()
            / a.as_raw().len() as f64
    };
    for (i, frame) in frames.iter().enumerate() {
        let nearest = (0..4)
            .min_by(|&a, &b| distance(frame, &gif[a]).total_cmp(&distance(frame, &gif[b])))
            .unwrap();
        assert_eq!(nearest, i, "frame {i} is nearest GIF frame {nearest}");
    }
    // A longer one (50 frames of 224×224): the frame stream is far larger than a pipe's buffer.
    let long = dir.path().join("testsrc.mp4");
    let status = std::process::Command::new("timeout")
        .args(["60", "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=224x224:rate=25"])
        .args(["-t", "2", "-pix_fmt", "yuv420p"])
        .arg(&long)
        .status()
        .unwrap();
    assert!(status.success());
    let frames = decode_video(
        &std::fs::read(&long).unwrap(),
        8,
        DecodeLimits::default(),
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(frames.len(), 8);
    assert!(frames.windows(2).all(|w| w[0] != w[1]), "eight different frames");
    eprintln!("ffmpeg check: ran");
}
