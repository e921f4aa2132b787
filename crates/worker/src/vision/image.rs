//! Image input: decoding with bounded memory, HF image-processor preprocessing reproduced to
//! the bit (Pillow's resampling in fixed point, then center crop, rescale and normalise), and
//! one hardened fetcher for `https://` URLs.
//!
//! HF's slow image processors resize with Pillow on 8-bit images; its convolution resampler
//! (support scaled by the reduction factor, so downscaling is antialiased; coefficients
//! rounded to 22-bit fixed point; horizontal pass, then vertical) is reproduced here exactly,
//! so `pixel_values` equal the HF processor's for the same decoded pixels.

use std::io::Cursor;
use std::net::IpAddr;
use std::time::Duration;

use image::{ImageReader, RgbImage};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Limits on decoding: a corrupt or hostile header cannot make the decoder allocate more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The widest or tallest image accepted, in pixels.
    pub max_side: u32,
    /// The most bytes the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_side: 16_384, max_alloc: 512 << 20 }
    }
}

/// Decodes PNG, JPEG, WebP, BMP or GIF (its first frame) bytes to 8-bit RGB (alpha dropped,
/// grey replicated: Pillow's `convert("RGB")`).
pub fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::InvalidInput("the image is empty (0 bytes)".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::InvalidInput(format!("reading the image: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::InvalidInput(
            "not an image this build reads (PNG, JPEG, WebP, BMP, GIF)".into(),
        ));
    }
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits);
    let too_large = |what: String| {
        Error::InvalidInput(format!(
            "the image is too large to decode (limits: {} px a side, {} MiB): {what}",
            limits.max_side,
            limits.max_alloc >> 20
        ))
    };
    let map = |e: image::ImageError| match e {
        image::ImageError::Limits(e) => too_large(e.to_string()),
        other => Error::InvalidInput(format!("decoding the image: {other}")),
    };
    let decoder = reader.into_decoder().map_err(map)?;
    // The decoder's limit covers its own buffer; the RGB copy made below is bounded here, so
    // a 16384² grey image (268 MB decoded, 805 MB as RGB) is refused before either exists.
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    let rgb_bytes = u64::from(width) * u64::from(height) * 3;
    if rgb_bytes > limits.max_alloc {
        return Err(too_large(format!("{width}x{height} is {} MiB as RGB", rgb_bytes >> 20)));
    }
    let image = image::DynamicImage::from_decoder(decoder).map_err(map)?;
    Ok(image.into_rgb8())
}

/// Pillow's resampling filters (`PIL.Image.Resampling`, HF's `resample` integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// 4: box.
    Box,
    /// 2: bilinear (triangle).
    Bilinear,
    /// 5: Hamming.
    Hamming,
    /// 3: bicubic, a = −0.5.
    Bicubic,
    /// 1: Lanczos, a = 3.
    Lanczos,
}

impl Filter {
    /// From HF's `resample` value.
    pub fn from_pil(code: u8) -> Result<Filter> {
        Ok(match code {
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            other => {
                return Err(Error::invalid_file(
                    "preprocessor_config.json",
                    format!("resample {other} (nearest) is not supported; 1-5 are"),
                ))
            }
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                let px = x * std::f64::consts::PI;
                px.sin() / px
            }
        };
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    px.sin() / px * (0.54 + 0.46 * px.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input pixel, and fixed-point weights of the pixels from there.
struct Coefficients {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `input` → `output` pixels.
fn coefficients(input: usize, output: usize, filter: Filter) -> Coefficients {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inverse = 1.0 / filter_scale;
    let mut first = Vec::with_capacity(output);
    let mut weights = Vec::with_capacity(output);
    for xx in 0..output {
        let center = (xx as f64 + 0.5) * scale;
        let min = ((center - support + 0.5) as i64).max(0) as usize;
        let max = ((center + support + 0.5) as i64).min(input as i64).max(min as i64) as usize;
        let raw: Vec<f64> =
            (min..max).map(|x| filter.weight((x as f64 - center + 0.5) * inverse)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|w| {
                let w = if total != 0.0 { w / total } else { *w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        first.push(min);
        weights.push(fixed);
    }
    Coefficients { first, weights }
}

fn clip8(value: i64) -> u8 {
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes as Pillow's `Image.resize((width, height), filter)` does an RGB image.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage> {
    let (w0, h0) = (image.width() as usize, image.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    if (w0, h0) == (w1, h1) {
        return Ok(image.clone());
    }
    let src = image.as_raw();
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass over the rows the vertical pass reads (all of them here: no box).
    let horizontal: Vec<u8> = if w1 != w0 {
        let c = coefficients(w0, w1, filter);
        let mut out = vec![0u8; w1 * h0 * 3];
        for y in 0..h0 {
            let row = &src[y * w0 * 3..(y + 1) * w0 * 3];
            for x in 0..w1 {
                let mut acc = [half; 3];
                for (k, &weight) in c.weights[x].iter().enumerate() {
                    let p = (c.first[x] + k) * 3;
                    for ch in 0..3 {
                        acc[ch] += i64::from(row[p + ch]) * i64::from(weight);
                    }
                }
                for ch in 0..3 {
                    out[(y * w1 + x) * 3 + ch] = clip8(acc[ch]);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    let vertical = if h1 != h0 {
        let c = coefficients(h0, h1, filter);
        let mut out = vec![0u8; w1 * h1 * 3];
        for y in 0..h1 {
            for x in 0..w1 {
                let mut acc = [half; 3];
                for (k, &weight) in c.weights[y].iter().enumerate() {
                    let p = ((c.first[y] + k) * w1 + x) * 3;
                    for ch in 0..3 {
                        acc[ch] += i64::from(horizontal[p + ch]) * i64::from(weight);
                    }
                }
                for ch in 0..3 {
                    out[(y * w1 + x) * 3 + ch] = clip8(acc[ch]);
                }
            }
        }
        out
    } else {
        horizontal
    };
    RgbImage::from_raw(width, height, vertical).ok_or_else(|| {
        Error::Inference(format!("resizing made a buffer that is not {width}×{height}"))
    })
}

/// An HF image processor's `preprocessor_config.json` (CLIP, ViT and their relatives).
#[derive(Debug, Clone)]
pub struct Processor {
    do_resize: bool,
    size: Size,
    resample: u8,
    do_center_crop: bool,
    crop_size: Option<Size>,
    do_rescale: bool,
    rescale_factor: f64,
    do_normalize: bool,
    image_mean: Vec<f32>,
    image_std: Vec<f32>,
}

/// The file's fields; what it leaves out is the processor class's default.
#[derive(Debug, Default, Deserialize)]
struct ProcessorFile {
    do_resize: Option<bool>,
    size: Option<Size>,
    resample: Option<u8>,
    do_center_crop: Option<bool>,
    crop_size: Option<Size>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

/// HF's `size`: a shortest edge (aspect kept) or an exact height and width.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Size {
    shortest_edge: Option<u32>,
    height: Option<u32>,
    width: Option<u32>,
}

impl Default for Processor {
    /// `CLIPImageProcessor`'s defaults: shortest edge 224 bicubic, crop 224, OpenAI's mean/std.
    fn default() -> Self {
        Processor {
            do_resize: true,
            size: Size { shortest_edge: Some(224), height: None, width: None },
            resample: 3,
            do_center_crop: true,
            crop_size: Some(Size { shortest_edge: None, height: Some(224), width: Some(224) }),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: vec![0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: vec![0.268_629_54, 0.261_302_6, 0.275_777_1],
        }
    }
}

impl Processor {
    /// Parses `preprocessor_config.json`; `defaults` (the processor class's) fills what it
    /// leaves out.
    pub fn parse(bytes: &[u8], defaults: Processor) -> Result<Processor> {
        let bad = |reason: String| Error::invalid_file("preprocessor_config.json", reason);
        let file: ProcessorFile = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not an image processor config: {e}")))?;
        let processor = Processor {
            do_resize: file.do_resize.unwrap_or(defaults.do_resize),
            size: file.size.unwrap_or(defaults.size),
            resample: file.resample.unwrap_or(defaults.resample),
            do_center_crop: file.do_center_crop.unwrap_or(defaults.do_center_crop),
            crop_size: file.crop_size.or(defaults.crop_size),
            do_rescale: file.do_rescale.unwrap_or(defaults.do_rescale),
            rescale_factor: file.rescale_factor.unwrap_or(defaults.rescale_factor),
            do_normalize: file.do_normalize.unwrap_or(defaults.do_normalize),
            image_mean: file.image_mean.unwrap_or(defaults.image_mean),
            image_std: file.image_std.unwrap_or(defaults.image_std),
        };
        Filter::from_pil(processor.resample)?;
        if processor.image_mean.len() != 3 || processor.image_std.len() != 3 {
            return Err(bad("image_mean and image_std need 3 values (RGB)".into()));
        }
        if processor.image_std.contains(&0.0) {
            return Err(bad("image_std has a zero".into()));
        }
        if processor.do_resize
            && processor.size.shortest_edge.is_none()
            && (processor.size.height.is_none() || processor.size.width.is_none())
        {
            return Err(bad("size needs shortest_edge, or height and width".into()));
        }
        Ok(processor)
    }

    /// These settings resizing and cropping to `size` (CLIP's form at another size).
    pub fn with_size(mut self, size: u32) -> Processor {
        self.size = Size { shortest_edge: Some(size), height: None, width: None };
        self.crop_size = Some(Size { shortest_edge: None, height: Some(size), width: Some(size) });
        self
    }

    /// VideoMAE's defaults (X-CLIP's frames): shortest edge 224 bilinear, crop 224, mean and
    /// std 0.5.
    pub fn videomae_default() -> Processor {
        Processor {
            resample: 2,
            image_mean: vec![0.5; 3],
            image_std: vec![0.5; 3],
            ..Processor::default()
        }
    }

    /// ViT's defaults: 224×224 bilinear, mean and std 0.5.
    pub fn vit_default() -> Processor {
        Processor {
            size: Size { shortest_edge: None, height: Some(224), width: Some(224) },
            resample: 2,
            do_center_crop: false,
            crop_size: None,
            image_mean: vec![0.5; 3],
            image_std: vec![0.5; 3],
            ..Processor::default()
        }
    }

    /// The output's (height, width).
    pub fn output_size(&self, height: u32, width: u32) -> (u32, u32) {
        let resized = self.resized_size(height, width);
        match (&self.crop_size, self.do_center_crop) {
            (Some(Size { height: Some(h), width: Some(w), .. }), true) => (*h, *w),
            _ => resized,
        }
    }

    fn resized_size(&self, height: u32, width: u32) -> (u32, u32) {
        if !self.do_resize {
            return (height, width);
        }
        match (self.size.shortest_edge, self.size.height, self.size.width) {
            (Some(edge), _, _) => {
                // HF's get_resize_output_image_size: the long side is truncated, not rounded.
                let (short, long) = (height.min(width), height.max(width));
                let long = (f64::from(edge) * f64::from(long) / f64::from(short.max(1))) as u32;
                if height <= width {
                    (edge, long)
                } else {
                    (long, edge)
                }
            }
            (None, Some(h), Some(w)) => (h, w),
            _ => (height, width),
        }
    }

    /// Refuses settings whose output is not `size`×`size`, the model's input (`what` names it).
    pub fn require_square(&self, size: u32, what: &str) -> Result<()> {
        if self.output_size(size * 2, size * 3) != (size, size) {
            return Err(Error::invalid_file(
                "preprocessor_config.json",
                format!("its output is not {size}×{size}, {what}"),
            ));
        }
        Ok(())
    }

    /// `pixel_values` of images as one `(n, 3, height, width)` tensor.
    pub fn batch<'a>(
        &self,
        images: impl IntoIterator<Item = &'a RgbImage>,
        device: &candle_core::Device,
    ) -> Result<candle_core::Tensor> {
        let mut data = Vec::new();
        let (mut count, mut shape) = (0, None);
        for image in images {
            let (values, h, w) = self.pixel_values(image)?;
            if *shape.get_or_insert((h, w)) != (h, w) {
                return Err(Error::Inference(format!("the processor made {h}×{w} pixels")));
            }
            data.extend(values);
            count += 1;
        }
        let (h, w) = shape.ok_or_else(|| Error::InvalidInput("no image".into()))?;
        Ok(candle_core::Tensor::from_vec(data, (count, 3, h as usize, w as usize), device)?)
    }

    /// `pixel_values` of one image: `3 × height × width`, channel-major.
    pub fn pixel_values(&self, image: &RgbImage) -> Result<(Vec<f32>, u32, u32)> {
        if image.width() == 0 || image.height() == 0 {
            return Err(Error::InvalidInput("the image has no pixels".into()));
        }
        let (h, w) = self.resized_size(image.height(), image.width());
        let filter = Filter::from_pil(self.resample)?;
        let resized = resize(image, w.max(1), h.max(1), filter)?;
        let (out_h, out_w) = self.output_size(image.height(), image.width());
        // HF's center_crop: top-left at ((H − h) / 2, (W − w) / 2), zero padding if smaller.
        let top = (i64::from(resized.height()) - i64::from(out_h)) / 2;
        let left = (i64::from(resized.width()) - i64::from(out_w)) / 2;
        let plane = (out_h * out_w) as usize;
        let mut out = vec![0f32; 3 * plane];
        let scale = if self.do_rescale { self.rescale_factor } else { 1.0 };
        for y in 0..out_h {
            for x in 0..out_w {
                let (sy, sx) = (i64::from(y) + top, i64::from(x) + left);
                let inside = sy >= 0
                    && sx >= 0
                    && sy < i64::from(resized.height())
                    && sx < i64::from(resized.width());
                for ch in 0..3 {
                    let raw = if inside {
                        f64::from(resized.get_pixel(sx as u32, sy as u32)[ch])
                    } else {
                        0.0
                    };
                    // numpy: rescale in f64, then f32; normalise in f32.
                    let mut v = (raw * scale) as f32;
                    if self.do_normalize {
                        v = (v - self.image_mean[ch]) / self.image_std[ch];
                    }
                    out[ch * plane + (y * out_w + x) as usize] = v;
                }
            }
        }
        Ok((out, out_h, out_w))
    }
}

/// How images are fetched from URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Give up after this long (connect, redirects and body together).
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_bytes: u64,
    /// Allow loopback, private, link-local and other non-public addresses, and plain `http`
    /// (for a model server on your own network; off by default).
    pub allow_private: bool,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy { timeout: Duration::from_secs(30), max_bytes: 32 << 20, allow_private: false }
    }
}

/// Whether `ip` is on the public internet (not loopback, private, link-local, CGNAT,
/// multicast, documentation, unspecified, or an IPv6 form of one of those).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Fetches an image from `url` under `policy`: `https` only (unless private addresses are
/// allowed), every resolved address public, redirects followed by hand (at most 5, each
/// checked again), the connection pinned to the checked addresses, an `image/*` content
/// type, and the body capped at `max_bytes` as it streams.
pub async fn fetch(url: &str, policy: &FetchPolicy) -> Result<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + policy.timeout;
    let mut current = reqwest::Url::parse(url)
        .map_err(|e| Error::InvalidInput(format!("{url:?} is not a URL: {e}")))?;
    for _ in 0..=5 {
        let response = tokio::time::timeout_at(deadline, request(&current, policy))
            .await
            .map_err(|_| timed_out(&current, policy))??;
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    Error::InvalidInput(format!("{current} redirects without a Location"))
                })?;
            current = current.join(location).map_err(|e| {
                Error::InvalidInput(format!("{current} redirects to a bad URL: {e}"))
            })?;
            continue;
        }
        if !response.status().is_success() {
            return Err(Error::InvalidInput(format!(
                "fetching {current}: HTTP {}",
                response.status()
            )));
        }
        let kind = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !kind.starts_with("image/") {
            return Err(Error::InvalidInput(format!(
                "{current} is not an image (content type {:?})",
                if kind.is_empty() { "none" } else { kind.as_str() }
            )));
        }
        if response.content_length().is_some_and(|n| n > policy.max_bytes) {
            return Err(too_big(&current, policy));
        }
        let mut body = Vec::new();
        let mut response = response;
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| timed_out(&current, policy))?
                .map_err(|e| Error::InvalidInput(format!("fetching {current}: {e}")))?;
            let Some(chunk) = chunk else { break };
            if (body.len() + chunk.len()) as u64 > policy.max_bytes {
                return Err(too_big(&current, policy));
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(url = %current, bytes = body.len(), "fetched image");
        return Ok(body);
    }
    Err(Error::InvalidInput(format!("{url} redirects more than 5 times")))
}

fn timed_out(url: &reqwest::Url, policy: &FetchPolicy) -> Error {
    Error::InvalidInput(format!("fetching {url} took longer than {:?}", policy.timeout))
}

fn too_big(url: &reqwest::Url, policy: &FetchPolicy) -> Error {
    Error::InvalidInput(format!("{url} is larger than the {} byte limit", policy.max_bytes))
}

/// One request, after checking the URL's scheme and every address its host resolves to.
async fn request(url: &reqwest::Url, policy: &FetchPolicy) -> Result<reqwest::Response> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        other => {
            return Err(Error::InvalidInput(format!(
                "{url}: only https:// image URLs are fetched (not {other}://)"
            )))
        }
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::InvalidInput(format!("{url} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| Error::InvalidInput(format!("resolving {host}: {e}")))?
        .collect();
    if addresses.is_empty() {
        return Err(Error::InvalidInput(format!("{host} resolves to no address")));
    }
    if !policy.allow_private {
        if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(Error::InvalidInput(format!(
                "{url} resolves to {}, a private or local address: refused (set [worker] image_fetch_allow_private to allow)",
                private.ip()
            )));
        }
    }
    // Pinned to the addresses just checked, so a second lookup cannot rebind the name.
    let client = ipfs_accelerate_common::http::client(policy.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addresses)
        .build()
        .map_err(|e| Error::Inference(format!("building the HTTP client: {e}")))?;
    tracing::debug!(%url, "fetching image");
    client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "image/*")
        .send()
        .await
        .map_err(|e| Error::InvalidInput(format!("fetching {url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn resizing_to_the_same_size_is_the_identity_and_constant_images_stay_constant() {
        let image = RgbImage::from_pixel(13, 7, image::Rgb([200, 10, 99]));
        assert_eq!(resize(&image, 13, 7, Filter::Bicubic).unwrap(), image);
        for filter in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos, Filter::Box] {
            let out = resize(&image, 5, 20, filter).unwrap();
            assert!(out.pixels().all(|p| p.0 == [200, 10, 99]), "{filter:?}");
        }
    }

    #[test]
    fn garbage_and_huge_images_are_clear_errors() {
        let err = decode(b"plain text", DecodeLimits::default()).unwrap_err().to_string();
        assert!(err.contains("not an image"), "{err}");
        let mut png = Vec::new();
        RgbImage::new(300, 20)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let err = decode(&png, DecodeLimits { max_side: 256, max_alloc: 1 << 20 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("too large"), "{err}");
    }
}
