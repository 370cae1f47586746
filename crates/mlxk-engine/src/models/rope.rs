//! Rotary position embeddings as mlx-lm configures them (`rope_utils.initialize_rope`).

use mlx_rs::fast;
use mlx_rs::Array;
use serde_json::Value;

use crate::error::{EngineError, Result};

pub enum Rope {
    /// Plain RoPE, with `scale` < 1 for linear scaling.
    Standard {
        dims: i32,
        base: f32,
        scale: f32,
        traditional: bool,
    },
    /// Explicit per-dimension frequencies (Llama 3.1 style scaling).
    Frequencies {
        dims: i32,
        freqs: Array,
        traditional: bool,
    },
}

impl Rope {
    pub fn new(dims: i32, base: f32, traditional: bool, scaling: Option<&Value>) -> Result<Self> {
        let scaling = scaling.filter(|s| !s.is_null());
        let kind = scaling
            .and_then(|s| s.get("type").or_else(|| s.get("rope_type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let number = |key: &str, default: f32| {
            scaling
                .and_then(|s| s.get(key))
                .and_then(Value::as_f64)
                .map_or(default, |v| v as f32)
        };
        match kind {
            "default" => Ok(Rope::Standard {
                dims,
                base,
                scale: 1.0,
                traditional,
            }),
            "linear" => Ok(Rope::Standard {
                dims,
                base,
                scale: 1.0 / number("factor", 1.0),
                traditional,
            }),
            "llama3" => Ok(Rope::Frequencies {
                dims,
                freqs: llama3_frequencies(
                    dims,
                    base,
                    number("factor", 8.0),
                    number("low_freq_factor", 1.0),
                    number("high_freq_factor", 4.0),
                    number("original_max_position_embeddings", 8192.0),
                ),
                traditional,
            }),
            other => Err(EngineError::Config(format!(
                "rope scaling '{other}' is not supported yet"
            ))),
        }
    }

    pub fn apply(&self, x: &Array, offset: i32) -> Result<Array> {
        Ok(match self {
            Rope::Standard {
                dims,
                base,
                scale,
                traditional,
            } => fast::rope(x, *dims, *traditional, *base, *scale, offset, None)?,
            Rope::Frequencies {
                dims,
                freqs,
                traditional,
            } => fast::rope(x, *dims, *traditional, None, 1.0, offset, freqs)?,
        })
    }
}

/// Llama 3.1's frequency scaling: long wavelengths slowed by `factor`, short ones kept, the band
/// between blended smoothly.
fn llama3_frequencies(
    dims: i32,
    base: f32,
    factor: f32,
    low: f32,
    high: f32,
    old_context: f32,
) -> Array {
    let low_wavelen = old_context / low;
    let high_wavelen = old_context / high;
    let freqs: Vec<f32> = (0..dims)
        .step_by(2)
        .map(|i| {
            let freq = base.powf(i as f32 / dims as f32);
            let wavelen = 2.0 * std::f32::consts::PI * freq;
            if wavelen > low_wavelen {
                freq * factor
            } else if wavelen > high_wavelen {
                let smooth = (old_context / wavelen - low) / (high - low);
                freq / ((1.0 - smooth) / factor + smooth)
            } else {
                freq
            }
        })
        .collect();
    Array::from_slice(&freqs, &[freqs.len() as i32])
}
