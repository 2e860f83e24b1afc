//! Pictures written as 8-bit grey PNG: grids of tiles (samples, filters) and curves
//! (training metrics against the epoch).

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

/// Writes the columns of `tiles` (each a row-major image of `shape` = (height, width); `(1, n)`
/// draws a unit vector that is no image as a strip) as a grid of `columns` tiles per row, with
/// a one-pixel border, to a grey PNG at `path` (atomically).
pub fn save_tile_grid(
    path: impl AsRef<Path>,
    tiles: &DMatrix<f32>,
    shape: (usize, usize),
    columns: usize,
    scale: Scale,
) -> Result<()> {
    let (height, width) = shape;
    if height == 0 || height.checked_mul(width) != Some(tiles.nrows()) {
        return Err(Error::shape(
            "image tiles",
            format!("{height}×{width} rows"),
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
    let (grid_width, grid_height) = (columns * (width + 1) + 1, rows * (height + 1) + 1);
    if grid_width.saturating_mul(grid_height) > MAX_PIXELS {
        return Err(Error::invalid(
            "image tile grid",
            format!("{grid_width}×{grid_height} pixels; at most {MAX_PIXELS}"),
        ));
    }
    let mut pixels = vec![0u8; grid_width * grid_height];
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
            (t % columns) * (width + 1) + 1,
            (t / columns) * (height + 1) + 1,
        );
        for (p, &x) in tile.iter().enumerate() {
            let grey = ((x - lo) / range).clamp(0.0, 1.0) * 255.0;
            pixels[(y0 + p / width) * grid_width + x0 + p % width] = grey.round() as u8;
        }
    }
    save_grey(path.as_ref(), grid_width, grid_height, &pixels)
}

/// The largest picture written (2^28 pixels: 256 MB of grey levels).
const MAX_PIXELS: usize = 1 << 28;

/// Writes `pixels` (row-major, `width × height`) as a grey PNG at `path`, atomically.
fn save_grey(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<()> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let png_error = |e: png::EncodingError| Error::io(path, std::io::Error::other(e));
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(pixels).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    crate::io::write_atomic(path, &bytes)
}

/// One panel of [`save_curves`]: a titled series of `(x, y)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub title: String,
    pub points: Vec<(f64, f64)>,
}

/// Panel size in pixels, and the margins that hold the labels.
const PANEL: (usize, usize) = (560, 180);
const MARGIN_LEFT: usize = 110;
const MARGIN_TOP: usize = 24;
const MARGIN_BOTTOM: usize = 22;
/// Glyphs are 3 × 5 cells, drawn `FONT_SCALE` pixels to the cell.
const FONT_SCALE: usize = 2;

/// Plots each curve in a panel of its own, stacked top to bottom, as a grey PNG at `path`
/// (atomically): a line through the finite points, a frame, the title, the y range at the left
/// and the x range below. Non-finite points are left out; a curve with none gets an empty frame.
pub fn save_curves(path: impl AsRef<Path>, curves: &[Curve]) -> Result<()> {
    if curves.is_empty() {
        return Err(Error::Empty {
            what: "curves to plot",
        });
    }
    let (width, panel_height) = PANEL;
    let height = panel_height * curves.len();
    let mut canvas = Canvas {
        width,
        pixels: vec![255u8; width * height],
    };
    for (i, curve) in curves.iter().enumerate() {
        let top = i * panel_height;
        let (x0, y0) = (MARGIN_LEFT, top + MARGIN_TOP);
        let (x1, y1) = (width - 10, top + panel_height - MARGIN_BOTTOM);
        canvas.frame(x0, y0, x1, y1);
        canvas.text(8, top + 6, &curve.title);
        let points: Vec<(f64, f64)> = curve
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let Some(range) = Range::of(&points) else {
            continue;
        };
        canvas.text(4, y0 + 2, &label(range.y.1));
        canvas.text(4, y1 - 12, &label(range.y.0));
        canvas.text(x0, y1 + 6, &label(range.x.0));
        let last = label(range.x.1);
        canvas.text(x1 - glyph_width(&last), y1 + 6, &last);
        let to_pixel = |(x, y): (f64, f64)| {
            let fx = (x - range.x.0) / (range.x.1 - range.x.0);
            let fy = (y - range.y.0) / (range.y.1 - range.y.0);
            (
                x0 as f64 + 2.0 + fx * (x1 - x0 - 4) as f64,
                y1 as f64 - 2.0 - fy * (y1 - y0 - 4) as f64,
            )
        };
        let mut previous = to_pixel(points[0]);
        canvas.dot(previous);
        for &p in &points[1..] {
            let next = to_pixel(p);
            canvas.line(previous, next);
            previous = next;
        }
    }
    save_grey(path.as_ref(), width, height, &canvas.pixels)
}

/// The x and y extent of a set of points, widened where it is a single value.
struct Range {
    x: (f64, f64),
    y: (f64, f64),
}

impl Range {
    fn of(points: &[(f64, f64)]) -> Option<Range> {
        let first = points.first()?;
        let (mut x, mut y) = ((first.0, first.0), (first.1, first.1));
        for &(px, py) in points {
            x = (x.0.min(px), x.1.max(px));
            y = (y.0.min(py), y.1.max(py));
        }
        let widen = |(lo, hi): (f64, f64)| {
            if hi > lo {
                (lo, hi)
            } else {
                let pad = (lo.abs() * 1e-3).max(1e-9);
                (lo - pad, hi + pad)
            }
        };
        Some(Range {
            x: widen(x),
            y: widen(y),
        })
    }
}

/// An axis label: whole numbers as they are, others with four significant digits (in exponent
/// form for very large or small values).
fn label(x: f64) -> String {
    let a = x.abs();
    if x.fract() == 0.0 && a < 1e6 {
        format!("{x:.0}")
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else {
        let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{x:.digits$}")
    }
}

fn glyph_width(text: &str) -> usize {
    text.chars().count() * 4 * FONT_SCALE
}

/// A grey image being drawn on: black ink on white.
struct Canvas {
    width: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: usize, y: usize) {
        if x < self.width
            && let Some(p) = self.pixels.get_mut(y * self.width + x)
        {
            *p = 0;
        }
    }

    fn frame(&mut self, x0: usize, y0: usize, x1: usize, y1: usize) {
        for x in x0..=x1 {
            self.set(x, y0);
            self.set(x, y1);
        }
        for y in y0..=y1 {
            self.set(x0, y);
            self.set(x1, y);
        }
    }

    fn dot(&mut self, (x, y): (f64, f64)) {
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            self.set(x as usize + dx, y as usize + dy);
        }
    }

    /// A two-pixel-wide line, one dot per pixel of its longer extent.
    fn line(&mut self, from: (f64, f64), to: (f64, f64)) {
        let steps = (to.0 - from.0)
            .abs()
            .max((to.1 - from.1).abs())
            .ceil()
            .max(1.0);
        for s in 0..=steps as usize {
            let t = s as f64 / steps;
            self.dot((from.0 + t * (to.0 - from.0), from.1 + t * (to.1 - from.1)));
        }
    }

    /// `text` in the 3 × 5 font with its top-left corner at `(x, y)`; letters print as capitals.
    fn text(&mut self, x: usize, y: usize, text: &str) {
        for (i, c) in text.chars().enumerate() {
            let rows = glyph(c);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for (dx, dy) in
                            (0..FONT_SCALE).flat_map(|a| (0..FONT_SCALE).map(move |b| (a, b)))
                        {
                            let px = x + (i * 4 + col) * FONT_SCALE + dx;
                            self.set(px, y + r * FONT_SCALE + dy);
                        }
                    }
                }
            }
        }
    }
}

/// The five rows (three bits each, left bit first) of a character of the plot font.
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '.' => [0, 0, 0, 0, 2],
        ',' => [0, 0, 0, 2, 4],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        '=' => [0, 7, 0, 7, 0],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        '/' => [1, 1, 2, 4, 4],
        ':' => [0, 2, 0, 2, 0],
        '_' => [0, 0, 0, 0, 7],
        ' ' => [0; 5],
        _ => [7, 1, 2, 0, 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_four_significant_digits() {
        assert_eq!(label(-84.375), "-84.38");
        assert_eq!(label(0.5), "0.5000");
        assert_eq!(label(0.002), "0.002000");
        assert_eq!(label(1234.5), "1234");
        assert_eq!(label(400.0), "400");
        assert_eq!(label(2e-5), "2.000e-5");
        assert_eq!(label(0.0), "0");
    }

    #[test]
    fn a_single_point_gets_a_range() {
        let r = Range::of(&[(1.0, 5.0)]).unwrap();
        assert!(r.x.0 < 1.0 && r.x.1 > 1.0 && r.y.0 < 5.0 && r.y.1 > 5.0);
        assert!(Range::of(&[]).is_none());
    }
}
