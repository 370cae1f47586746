//! Rotary position embeddings as mlx-lm configures them (`rope_utils.initialize_rope`).

use mlx_rs::fast;
use mlx_rs::Array;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::kv_cache::RowOffsets;

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
        if dims < 1 {
            return Err(EngineError::Config(format!(
                "the rotary embedding would cover {dims} dimensions of each head"
            )));
        }
        let scaling = scaling.filter(|s| !s.is_null());
        match scaling.map_or("default", scaling_kind) {
            "default" => Ok(Rope::Standard {
                dims,
                base,
                scale: 1.0,
                traditional,
            }),
            "linear" => Ok(Rope::Standard {
                dims,
                base,
                scale: 1.0 / scaling.and_then(|s| number(s, "factor")).unwrap_or(1.0),
                traditional,
            }),
            "llama3" => {
                let freqs = Llama3Scaling::from_config(scaling.unwrap_or(&Value::Null))
                    .frequencies(dims, base)?;
                Ok(Rope::Frequencies {
                    dims,
                    freqs: Array::from_slice(&freqs, &[freqs.len() as i32]),
                    traditional,
                })
            }
            other => Err(EngineError::Config(format!(
                "rope scaling '{other}' is not supported yet"
            ))),
        }
    }

    /// Rotates `x` `[rows, heads, L, head_dim]`, whose first position is at `offsets`.
    pub fn apply(&self, x: &Array, offsets: &RowOffsets) -> Result<Array> {
        let (dims, traditional, base, scale, freqs) = match self {
            Rope::Standard {
                dims,
                base,
                scale,
                traditional,
            } => (*dims, *traditional, Some(*base), *scale, None),
            Rope::Frequencies {
                dims,
                freqs,
                traditional,
            } => (*dims, *traditional, None, 1.0, Some(freqs)),
        };
        Ok(match offsets {
            RowOffsets::One(offset) => {
                fast::rope(x, dims, traditional, base, scale, *offset, freqs)?
            }
            RowOffsets::PerRow(offsets) => {
                fast::rope_dynamic(x, dims, traditional, base, scale, offsets, freqs)?
            }
        })
    }
}

/// `rope_scaling`'s `type` (or `rope_type`), `default` when it names none.
pub(super) fn scaling_kind(scaling: &Value) -> &str {
    scaling
        .get("type")
        .or_else(|| scaling.get("rope_type"))
        .and_then(Value::as_str)
        .unwrap_or("default")
}

fn number(scaling: &Value, key: &str) -> Option<f32> {
    scaling.get(key).and_then(Value::as_f64).map(|v| v as f32)
}

/// Llama 3.1's frequency scaling, with mlx-lm's defaults for what a config leaves out.
#[derive(Clone, Copy)]
pub(super) struct Llama3Scaling {
    pub(super) factor: f32,
    pub(super) low_freq_factor: f32,
    pub(super) high_freq_factor: f32,
    pub(super) original_max_position_embeddings: f32,
}

impl Llama3Scaling {
    pub(super) fn from_config(scaling: &Value) -> Self {
        Llama3Scaling {
            factor: number(scaling, "factor").unwrap_or(8.0),
            low_freq_factor: number(scaling, "low_freq_factor").unwrap_or(1.0),
            high_freq_factor: number(scaling, "high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: number(scaling, "original_max_position_embeddings")
                .unwrap_or(8192.0),
        }
    }

    /// Long wavelengths slowed by `factor`, short ones kept, the band between blended
    /// smoothly. Numbers the config check let through can still combine into an overflow
    /// (a huge base times a huge factor): such frequencies are an error, never inf or NaN.
    fn frequencies(&self, dims: i32, base: f32) -> Result<Vec<f32>> {
        let Llama3Scaling {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: old_context,
        } = *self;
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
        if freqs.iter().all(|f| f.is_finite() && *f > 0.0) {
            Ok(freqs)
        } else {
            Err(EngineError::Config(format!(
                "rope_scaling: llama3 scaling of rope base {base} gives frequencies that are \
                 not finite positive numbers"
            )))
        }
    }
}
