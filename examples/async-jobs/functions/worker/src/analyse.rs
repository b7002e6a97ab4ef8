//! The CPU work: decode, measure, thumbnail (plain Rust, testable natively).

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use jobs_common::Analysis;

/// Longest side of a thumbnail.
pub const THUMBNAIL_MAX: u32 = 160;
/// Longest side of an image that is decoded at all.
pub const MAX_SIDE: u32 = 10_000;
/// Most memory the decoder may allocate.
pub const MAX_ALLOC: u64 = 512 << 20;

/// A decoded image and what it was.
pub struct Decoded {
    /// The pixels.
    pub pixels: DynamicImage,
    /// `png` or `jpeg`.
    pub format: &'static str,
}

/// A thumbnail, encoded.
pub struct Thumbnail {
    /// PNG bytes.
    pub png: Vec<u8>,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// Decodes a PNG or JPEG; the error is a sentence for the job's `error`.
pub fn decode(data: &[u8]) -> Result<Decoded, String> {
    let reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    let format = match reader.format() {
        Some(ImageFormat::Png) => "png",
        Some(ImageFormat::Jpeg) => "jpeg",
        Some(other) => return Err(format!("{other:?} images are not supported")),
        None => return Err("not a PNG or JPEG image".into()),
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = reader;
    reader.limits(limits);
    let pixels = reader
        .decode()
        .map_err(|e| format!("cannot decode the {format} image: {e}"))?;
    Ok(Decoded { pixels, format })
}

/// Dimensions and colour statistics (the thumbnail fields are left at 0).
pub fn measure(image: &Decoded) -> Analysis {
    let rgba = image.pixels.to_rgba8();
    let n = f64::from(rgba.width()) * f64::from(rgba.height());
    let mut sum = [0f64; 3];
    let mut luma_sum = 0f64;
    let mut histogram = [0u64; 8];
    let mut boxes = vec![0u32; 4096];
    let mut box_sums = vec![[0u64; 3]; 4096];
    let mut transparent = false;
    for p in rgba.pixels() {
        let [r, g, b, a] = p.0;
        sum[0] += f64::from(r);
        sum[1] += f64::from(g);
        sum[2] += f64::from(b);
        let luma = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
        luma_sum += luma;
        histogram[((luma as usize) / 32).min(7)] += 1;
        let bx = (usize::from(r >> 4) << 8) | (usize::from(g >> 4) << 4) | usize::from(b >> 4);
        boxes[bx] += 1;
        box_sums[bx][0] += u64::from(r);
        box_sums[bx][1] += u64::from(g);
        box_sums[bx][2] += u64::from(b);
        transparent |= a < 255;
    }
    let (top, count) = boxes
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .map(|(i, c)| (i, *c))
        .unwrap_or((0, 0));
    let dominant = if count == 0 {
        [0, 0, 0]
    } else {
        let c = u64::from(count);
        [
            box_sums[top][0] / c,
            box_sums[top][1] / c,
            box_sums[top][2] / c,
        ]
    };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let n = n.max(1.0);
    Analysis {
        format: image.format.into(),
        width: rgba.width(),
        height: rgba.height(),
        color_type: format!("{:?}", image.pixels.color()),
        has_transparency: transparent,
        mean_rgb: [round(sum[0] / n), round(sum[1] / n), round(sum[2] / n)],
        mean_luma: round(luma_sum / n),
        luma_histogram: histogram.map(|h| round(h as f64 / n * 100.0) / 100.0),
        dominant_color: format!("#{:02x}{:02x}{:02x}", dominant[0], dominant[1], dominant[2]),
        thumbnail_width: 0,
        thumbnail_height: 0,
        thumbnail_bytes: 0,
    }
}

/// The size that fits `width`×`height` in `max`×`max`, keeping the aspect
/// ratio (never enlarging, never 0).
pub fn fit(width: u32, height: u32, max: u32) -> (u32, u32) {
    if width <= max && height <= max {
        return (width.max(1), height.max(1));
    }
    let scale = f64::from(max) / f64::from(width.max(height));
    let w = (f64::from(width) * scale).round().max(1.0) as u32;
    let h = (f64::from(height) * scale).round().max(1.0) as u32;
    (w.min(max), h.min(max))
}

/// A Lanczos3 thumbnail of at most [`THUMBNAIL_MAX`] a side, as PNG.
pub fn thumbnail(image: &DynamicImage) -> Result<Thumbnail, String> {
    let (width, height) = fit(image.width(), image.height(), THUMBNAIL_MAX);
    let small = image.resize_exact(width, height, FilterType::Lanczos3);
    let small = if small.color().has_alpha() {
        DynamicImage::ImageRgba8(small.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(small.to_rgb8())
    };
    let mut png = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| format!("cannot encode the thumbnail: {e}"))?;
    Ok(Thumbnail { png, width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_ratio() {
        assert_eq!(fit(640, 480, 160), (160, 120));
        assert_eq!(fit(480, 640, 160), (120, 160));
        assert_eq!(fit(100, 50, 160), (100, 50));
        assert_eq!(fit(10_000, 1, 160), (160, 1));
    }

    #[test]
    fn measures_and_thumbnails_a_generated_image() {
        let img = image::RgbImage::from_fn(320, 200, |x, _| {
            if x < 240 {
                image::Rgb([200, 30, 30])
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let decoded = decode(&png).unwrap();
        let a = measure(&decoded);
        assert_eq!((a.width, a.height, a.format.as_str()), (320, 200, "png"));
        assert_eq!(a.dominant_color, "#c81e1e");
        assert!((a.mean_rgb[0] - 150.0).abs() < 0.01, "{:?}", a.mean_rgb);
        let t = thumbnail(&decoded.pixels).unwrap();
        assert_eq!((t.width, t.height), (160, 100));
        assert!(decode(b"\x89PNG\r\n\x1a\nbroken").is_err());
    }
}
