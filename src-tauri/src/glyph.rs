//! The tray icon, drawn: one monochrome glyph per server state, told apart by its shape, not
//! by colour (a menu bar shows icons in one colour, and not everyone tells green from red).
//! Stopped is a ring, starting a dashed ring, running a filled disc, exposed beyond loopback
//! the disc with a badge, an error a ring struck through (⊘). On macOS the glyph is a template
//! image (black ink the system tints for a light or dark menu bar); elsewhere, where a panel may
//! be light or dark, the ink is dark with a thin light edge so that it reads on either.

use crate::server::ServerStatus;

/// Width and height in pixels.
pub const SIZE: u32 = 32;
/// Samples per pixel along each axis (anti-aliasing).
const SUPERSAMPLE: u32 = 4;
const CENTRE: f32 = 16.0;
const RADIUS: f32 = 13.0;
const STROKE: f32 = 3.5;
/// The exposed badge: a dot at the top right, with a gap cut around it from the disc.
const BADGE: (f32, f32) = (25.5, 6.5);
const BADGE_RADIUS: f32 = 5.5;
const BADGE_GAP: f32 = 8.0;
/// The light edge around the ink off macOS, in pixels.
const EDGE: f32 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glyph {
    Stopped,
    Starting,
    Running,
    Exposed,
    Error,
}

impl Glyph {
    pub const ALL: [Glyph; 5] = [
        Glyph::Stopped,
        Glyph::Starting,
        Glyph::Running,
        Glyph::Exposed,
        Glyph::Error,
    ];

    pub fn of(status: &ServerStatus) -> Glyph {
        match status {
            ServerStatus::Stopped => Glyph::Stopped,
            ServerStatus::Starting { .. } => Glyph::Starting,
            ServerStatus::Running { exposed: false, .. } => Glyph::Running,
            ServerStatus::Running { exposed: true, .. } => Glyph::Exposed,
            ServerStatus::Error { .. } => Glyph::Error,
        }
    }

    /// Whether the point (`x`, `y`) in pixels (y down) is ink.
    fn covers(self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - CENTRE, y - CENTRE);
        let d = dx.hypot(dy);
        let ring = (RADIUS - STROKE..=RADIUS).contains(&d);
        let disc = d <= RADIUS;
        match self {
            Glyph::Stopped => ring,
            // Eight dashes: the angle's eighth, every other one.
            Glyph::Starting => {
                let turn = (dy.atan2(dx) / std::f32::consts::TAU + 1.0).fract();
                ring && ((turn * 8.0) as u32).is_multiple_of(2)
            }
            Glyph::Running => disc,
            Glyph::Exposed => {
                let badge = (x - BADGE.0).hypot(y - BADGE.1);
                badge <= BADGE_RADIUS || (disc && badge > BADGE_GAP)
            }
            // The bar from top right to bottom left, inside the ring.
            Glyph::Error => ring || (disc && (dx + dy).abs() / std::f32::consts::SQRT_2 <= 1.75),
        }
    }

    /// How much of each pixel (row by row) is ink, 0 to 255.
    pub fn coverage(self) -> Vec<u8> {
        coverage_of(|x, y| self.covers(x, y))
    }

    /// The icon as RGBA pixels, [`SIZE`] × [`SIZE`]: black ink for a template image on macOS,
    /// dark ink with a light edge elsewhere.
    pub fn rgba(self) -> Vec<u8> {
        let ink = self.coverage();
        if cfg!(target_os = "macos") {
            return ink.iter().flat_map(|&a| [0, 0, 0, a]).collect();
        }
        let edge = coverage_of(|x, y| self.near(x, y));
        ink.iter()
            .zip(edge)
            .flat_map(|(&ink, edge)| {
                let (ink, edge) = (f32::from(ink) / 255.0, f32::from(edge) / 255.0);
                let edge = (edge - ink).max(0.0) * 0.85;
                let alpha = ink + edge;
                let grey = if alpha > 0.0 {
                    (ink * INK + edge * LIGHT) / alpha
                } else {
                    0.0
                };
                let grey = grey.round() as u8;
                [grey, grey, grey, (alpha * 255.0).round() as u8]
            })
            .collect()
    }

    /// Within [`EDGE`] of the ink.
    fn near(self, x: f32, y: f32) -> bool {
        const STEPS: i32 = 3;
        (-STEPS..=STEPS).any(|i| {
            (-STEPS..=STEPS).any(|j| {
                let (ox, oy) = (
                    i as f32 * EDGE / STEPS as f32,
                    j as f32 * EDGE / STEPS as f32,
                );
                ox.hypot(oy) <= EDGE && self.covers(x + ox, y + oy)
            })
        })
    }
}

/// The ink's grey and its edge's, off macOS.
const INK: f32 = 32.0;
const LIGHT: f32 = 245.0;

/// The share of each pixel's samples where `inside` holds, 0 to 255.
fn coverage_of(inside: impl Fn(f32, f32) -> bool) -> Vec<u8> {
    let step = 1.0 / SUPERSAMPLE as f32;
    let samples = (SUPERSAMPLE * SUPERSAMPLE) as f32;
    (0..SIZE * SIZE)
        .map(|p| {
            let (px, py) = ((p % SIZE) as f32, (p / SIZE) as f32);
            let hits = (0..SUPERSAMPLE * SUPERSAMPLE)
                .filter(|s| {
                    let x = px + (s % SUPERSAMPLE) as f32 * step + step / 2.0;
                    let y = py + (s / SUPERSAMPLE) as f32 * step + step / 2.0;
                    inside(x, y)
                })
                .count() as f32;
            (hits / samples * 255.0).round() as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ink at pixel (x, y).
    fn ink(glyph: Glyph, x: u32, y: u32) -> u8 {
        glyph.coverage()[(y * SIZE + x) as usize]
    }

    fn total_ink(glyph: Glyph) -> u32 {
        glyph.coverage().iter().map(|&a| u32::from(a)).sum()
    }

    #[test]
    fn each_state_has_its_own_shape() {
        for (i, a) in Glyph::ALL.iter().enumerate() {
            for b in &Glyph::ALL[i + 1..] {
                assert_ne!(a.coverage(), b.coverage(), "{a:?} and {b:?} look the same");
            }
        }
        // Stopped: a ring, empty inside; running: filled.
        assert_eq!(ink(Glyph::Stopped, 16, 16), 0);
        assert_eq!(ink(Glyph::Running, 16, 16), 255);
        assert_eq!(ink(Glyph::Stopped, 16, 4), 255, "the ring's top");
        // Starting: the ring with gaps.
        assert!(total_ink(Glyph::Starting) < total_ink(Glyph::Stopped) * 3 / 4);
        // Exposed: the badge where the disc has none, and a gap around it.
        assert_eq!(ink(Glyph::Running, 27, 4), 0);
        assert_eq!(ink(Glyph::Exposed, 27, 4), 255);
        assert_eq!(ink(Glyph::Running, 20, 11), 255);
        assert_eq!(
            ink(Glyph::Exposed, 20, 11),
            0,
            "the gap between disc and badge"
        );
        // Error: struck through, so ink in the middle, but much less than a filled disc.
        assert_eq!(ink(Glyph::Error, 16, 16), 255);
        assert!(total_ink(Glyph::Error) < total_ink(Glyph::Running) * 2 / 3);
    }

    #[test]
    fn the_pixels_are_one_ink_on_transparency() {
        for glyph in Glyph::ALL {
            let rgba = glyph.rgba();
            assert_eq!(rgba.len(), (SIZE * SIZE * 4) as usize);
            // Corners are empty: nothing but the glyph is drawn.
            assert_eq!(rgba[3], 0);
            assert_eq!(rgba[rgba.len() - 1], 0);
            let solid: Vec<&[u8]> = rgba.chunks(4).filter(|p| p[3] == 255).collect();
            assert!(!solid.is_empty());
            let grey = if cfg!(target_os = "macos") {
                0
            } else {
                INK as u8
            };
            assert!(
                solid.iter().all(|p| p[0] == p[1] && p[1] == p[2]),
                "monochrome"
            );
            assert!(solid.iter().any(|p| p[0] == grey), "{glyph:?}");
        }
    }
}
