//! Tightly packed I420 (YUV 4:2:0 planar) frames: the format screen shares arrive in after VP8 decode and the
//! format the compositor hands to the H.264 encoder.
//!
//! Layout: the Y plane (`width × height` bytes), then U, then V (each `ceil(width/2) × ceil(height/2)` bytes),
//! rows without padding. Colours use limited ("TV") range, as H.264 and VP8 do.

use crate::error::{Error, Result};

/// Largest accepted frame side; bigger frames are a broken decoder, not a screen.
pub const MAX_FRAME_SIDE: u32 = 8192;

/// One limited-range YUV colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Yuv {
    /// Luma (16 = black, 235 = white).
    pub y: u8,
    /// Blue-difference chroma (128 = neutral).
    pub u: u8,
    /// Red-difference chroma (128 = neutral).
    pub v: u8,
}

impl Yuv {
    /// A colour from its luma and chroma values.
    pub const fn new(y: u8, u: u8, v: u8) -> Yuv {
        Yuv { y, u, v }
    }

    /// Black as in letterbox bars.
    pub const BLACK: Yuv = Yuv::new(16, 128, 128);
    /// The dark slate shown when nobody shares a screen (about RGB 30, 34, 44).
    pub const BACKGROUND: Yuv = Yuv::new(45, 133, 126);

    /// Converts full-range RGB into limited-range BT.601 YUV (what test patterns and backgrounds are drawn in).
    pub fn from_rgb(r: u8, g: u8, b: u8) -> Yuv {
        let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        // Each expression stays within 16..=240 for any 8-bit input.
        Yuv {
            y: y.round() as u8,
            u: u.round() as u8,
            v: v.round() as u8,
        }
    }
}

/// A tightly packed I420 frame whose buffer length is known to match its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl I420Frame {
    /// Bytes a packed I420 frame of this size occupies.
    pub fn packed_len(width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        w * h + 2 * w.div_ceil(2) * h.div_ceil(2)
    }

    /// Wraps a decoded frame, checking the size (1..=8192 per side) and the buffer length.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<I420Frame> {
        if width == 0 || height == 0 || width > MAX_FRAME_SIDE || height > MAX_FRAME_SIDE {
            return Err(Error::InvalidFrame(format!(
                "size {width}x{height} is outside 1..={MAX_FRAME_SIDE} per side"
            )));
        }
        let expected = I420Frame::packed_len(width, height);
        if data.len() != expected {
            return Err(Error::InvalidFrame(format!(
                "{width}x{height} i420 needs {expected} bytes, got {}",
                data.len()
            )));
        }
        Ok(I420Frame {
            width,
            height,
            data,
        })
    }

    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, colour: Yuv) -> I420Frame {
        let luma = width as usize * height as usize;
        let chroma = (width as usize).div_ceil(2) * (height as usize).div_ceil(2);
        let mut data = vec![colour.y; luma + 2 * chroma];
        data[luma..luma + chroma].fill(colour.u);
        data[luma + chroma..].fill(colour.v);
        I420Frame {
            width,
            height,
            data,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The packed bytes (Y, U, V).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Gives the buffer back (e.g. to reuse it for the next decode).
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Width and height of each plane: `[(w, h) of Y, of U, of V]`.
    pub fn plane_sizes(&self) -> [(usize, usize); 3] {
        let (w, h) = (self.width as usize, self.height as usize);
        let chroma = (w.div_ceil(2), h.div_ceil(2));
        [(w, h), chroma, chroma]
    }

    /// The three planes as slices, each `plane_sizes()[i].0` bytes per row.
    pub fn planes(&self) -> [&[u8]; 3] {
        let [(yw, yh), (cw, ch), _] = self.plane_sizes();
        let (y, rest) = self.data.split_at(yw * yh);
        let (u, v) = rest.split_at(cw * ch);
        [y, u, v]
    }

    /// The three planes, mutable.
    pub fn planes_mut(&mut self) -> [&mut [u8]; 3] {
        let [(yw, yh), (cw, ch), _] = self.plane_sizes();
        let (y, rest) = self.data.split_at_mut(yw * yh);
        let (u, v) = rest.split_at_mut(cw * ch);
        [y, u, v]
    }

    /// The colour at a pixel (chroma is shared by 2×2 blocks). `None` outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<Yuv> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let [(yw, _), (cw, _), _] = self.plane_sizes();
        let [luma, u, v] = self.planes();
        let (x, y) = (x as usize, y as usize);
        let chroma_index = (y / 2) * cw + x / 2;
        Some(Yuv {
            y: luma[y * yw + x],
            u: u[chroma_index],
            v: v[chroma_index],
        })
    }

    /// Paints a rectangle (clipped to the frame). Used for backgrounds and test patterns.
    pub fn fill_rect(&mut self, x: u32, y: u32, width: u32, height: u32, colour: Yuv) {
        let x_end = (x.saturating_add(width)).min(self.width) as usize;
        let y_end = (y.saturating_add(height)).min(self.height) as usize;
        let (x, y) = (x as usize, y as usize);
        if x >= x_end || y >= y_end {
            return;
        }
        let [(yw, _), (cw, _), _] = self.plane_sizes();
        let [luma, u, v] = self.planes_mut();
        for row in y..y_end {
            luma[row * yw + x..row * yw + x_end].fill(colour.y);
        }
        for row in y / 2..y_end.div_ceil(2) {
            let range = row * cw + x / 2..row * cw + x_end.div_ceil(2);
            u[range.clone()].fill(colour.u);
            v[range].fill(colour.v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_length_rounds_chroma_up() {
        assert_eq!(I420Frame::packed_len(4, 2), 8 + 2 * 2);
        assert_eq!(I420Frame::packed_len(5, 3), 15 + 2 * 3 * 2);
    }

    #[test]
    fn wrong_buffer_or_size_is_a_clear_error() {
        let err = I420Frame::new(4, 4, vec![0; 10]).unwrap_err().to_string();
        assert!(err.contains("needs 24 bytes, got 10"), "{err}");
        let err = I420Frame::new(0, 4, vec![]).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        assert!(I420Frame::new(5, 3, vec![0; 27]).is_ok());
    }

    #[test]
    fn fill_rect_paints_luma_and_chroma() {
        let red = Yuv::from_rgb(255, 0, 0);
        let mut frame = I420Frame::filled(8, 8, Yuv::BLACK);
        frame.fill_rect(2, 2, 4, 4, red);
        assert_eq!(frame.pixel(3, 3), Some(red));
        assert_eq!(frame.pixel(0, 0), Some(Yuv::BLACK));
        assert_eq!(frame.pixel(7, 7), Some(Yuv::BLACK));
        assert_eq!(frame.pixel(8, 0), None);
    }

    #[test]
    fn rgb_conversion_matches_bt601() {
        assert_eq!(Yuv::from_rgb(0, 0, 0), Yuv::BLACK);
        assert_eq!(
            Yuv::from_rgb(255, 255, 255),
            Yuv {
                y: 235,
                u: 128,
                v: 128
            }
        );
        assert_eq!(Yuv::from_rgb(30, 34, 44), Yuv::BACKGROUND);
    }
}
