//! Pictures: grids of square tiles (samples, filters) written as 8-bit grey PNG.

use crate::error::{Error, Result};
use nalgebra::DMatrix;
use std::path::Path;

/// How tile values become grey levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// Values in [0, 1] (probabilities, binary samples), clipped: 0 black, 1 white.
    Unit,
    /// Each tile stretched from its own minimum (black) to maximum (white): for filters.
    PerTile,
}

/// Writes the columns of `tiles` (each a row-major `side × side` image) as a grid of `columns`
/// tiles per row, with a one-pixel border, to a grey PNG at `path` (atomically).
pub fn save_tile_grid(
    path: impl AsRef<Path>,
    tiles: &DMatrix<f32>,
    side: usize,
    columns: usize,
    scale: Scale,
) -> Result<()> {
    if side == 0 || tiles.nrows() != side * side {
        return Err(Error::shape(
            "image tiles",
            format!("{side}×{side} = {} rows", side * side),
            tiles.nrows(),
        ));
    }
    let n = tiles.ncols();
    if n == 0 || columns == 0 {
        return Err(Error::Empty {
            what: "image tile grid",
        });
    }
    let rows = n.div_ceil(columns);
    let (width, height) = (columns * (side + 1) + 1, rows * (side + 1) + 1);
    let mut pixels = vec![0u8; width * height];
    for (t, tile) in tiles.column_iter().enumerate() {
        let (lo, hi) = match scale {
            Scale::Unit => (0.0, 1.0),
            Scale::PerTile => tile
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                }),
        };
        let range = (hi - lo).max(1e-12);
        let (x0, y0) = (
            (t % columns) * (side + 1) + 1,
            (t / columns) * (side + 1) + 1,
        );
        for (p, &x) in tile.iter().enumerate() {
            let grey = ((x - lo) / range).clamp(0.0, 1.0) * 255.0;
            pixels[(y0 + p / side) * width + x0 + p % side] = grey.round() as u8;
        }
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let path = path.as_ref();
    let png_error = |e: png::EncodingError| Error::io(path, std::io::Error::other(e));
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&pixels).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    crate::io::write_atomic(path, &bytes)
}
