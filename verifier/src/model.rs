//! Model metadata shared by the manifest and the `.slm` header: shape and
//! quantization. Both formats spell them the same way, which is what makes
//! the drift check between them a plain equality.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the tensor weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    /// 32-bit IEEE floats.
    F32,
    /// 16-bit IEEE floats.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks of 32 weights with one f16 scale (34 bytes a block).
    Q8_0,
    /// 4-bit blocks of 32 weights with one f16 scale (18 bytes a block).
    Q4_0,
}

impl Quantization {
    /// Every quantization, in code order.
    pub const ALL: [Quantization; 5] = [
        Quantization::F32,
        Quantization::F16,
        Quantization::Bf16,
        Quantization::Q8_0,
        Quantization::Q4_0,
    ];

    /// The text name used in manifests and JSON (`q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::Bf16 => "bf16",
            Quantization::Q8_0 => "q8_0",
            Quantization::Q4_0 => "q4_0",
        }
    }

    /// The one-byte code used in the `.slm` header (`docs/slm-format.md`).
    pub fn code(self) -> u8 {
        match self {
            Quantization::F32 => 0,
            Quantization::F16 => 1,
            Quantization::Bf16 => 2,
            Quantization::Q8_0 => 8,
            Quantization::Q4_0 => 9,
        }
    }

    /// The quantization with this `.slm` code, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.code() == code)
    }

    /// Bytes taken by `elements` weights, or `None` when `elements` does not
    /// fill whole blocks (block formats) or the size overflows.
    pub fn tensor_bytes(self, elements: u64) -> Option<u64> {
        match self {
            Quantization::F32 => elements.checked_mul(4),
            Quantization::F16 | Quantization::Bf16 => elements.checked_mul(2),
            Quantization::Q8_0 => block_bytes(elements, 34),
            Quantization::Q4_0 => block_bytes(elements, 18),
        }
    }
}

fn block_bytes(elements: u64, bytes_per_block: u64) -> Option<u64> {
    if !elements.is_multiple_of(32) {
        return None;
    }
    (elements / 32).checked_mul(bytes_per_block)
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a known quantization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quantization {0:?} (expected one of f32, f16, bf16, q8_0, q4_0)")]
pub struct UnknownQuantization(pub String);

impl FromStr for Quantization {
    type Err = UnknownQuantization;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|q| q.name() == text)
            .ok_or_else(|| UnknownQuantization(text.to_owned()))
    }
}

/// The architecture numbers of a model.
///
/// Text form (manifest, JSON): `layers=4,hidden=256,heads=8,vocab=32000,context=2048`,
/// exactly these five keys in this order, decimal without leading zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelShape {
    /// Transformer blocks.
    pub layers: u32,
    /// Hidden (embedding) width.
    pub hidden: u32,
    /// Attention heads; divides `hidden`.
    pub heads: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// Context length in tokens.
    pub context: u32,
}

/// Why a model shape is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelShapeError {
    /// The text is not `layers=..,hidden=..,heads=..,vocab=..,context=..`.
    #[error("model shape must read layers=N,hidden=N,heads=N,vocab=N,context=N")]
    Syntax,
    /// A number is zero, too large or has leading zeros.
    #[error("model shape field {0} must be a decimal number from 1 to 4294967295")]
    Number(&'static str),
    /// `hidden` is not a multiple of `heads`.
    #[error("model shape hidden={hidden} is not a multiple of heads={heads}")]
    HeadsDoNotDivideHidden {
        /// Hidden width.
        hidden: u32,
        /// Head count.
        heads: u32,
    },
}

const SHAPE_KEYS: [&str; 5] = ["layers", "hidden", "heads", "vocab", "context"];

impl ModelShape {
    /// Checks the rules every shape must meet: all numbers at least one and
    /// `heads` divides `hidden`.
    pub fn validate(&self) -> Result<(), ModelShapeError> {
        for (key, value) in SHAPE_KEYS.iter().zip(self.values()) {
            if value == 0 {
                return Err(ModelShapeError::Number(key));
            }
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(ModelShapeError::HeadsDoNotDivideHidden {
                hidden: self.hidden,
                heads: self.heads,
            });
        }
        Ok(())
    }

    fn values(&self) -> [u32; 5] {
        [
            self.layers,
            self.hidden,
            self.heads,
            self.vocab,
            self.context,
        ]
    }
}

impl fmt::Display for ModelShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layers={},hidden={},heads={},vocab={},context={}",
            self.layers, self.hidden, self.heads, self.vocab, self.context
        )
    }
}

impl FromStr for ModelShape {
    type Err = ModelShapeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut values = [0u32; 5];
        let mut parts = text.split(',');
        for (slot, key) in values.iter_mut().zip(SHAPE_KEYS) {
            let part = parts.next().ok_or(ModelShapeError::Syntax)?;
            let (name, number) = part.split_once('=').ok_or(ModelShapeError::Syntax)?;
            if name != key {
                return Err(ModelShapeError::Syntax);
            }
            *slot = parse_canonical_u32(number).ok_or(ModelShapeError::Number(key))?;
        }
        if parts.next().is_some() {
            return Err(ModelShapeError::Syntax);
        }
        let shape = ModelShape {
            layers: values[0],
            hidden: values[1],
            heads: values[2],
            vocab: values[3],
            context: values[4],
        };
        shape.validate()?;
        Ok(shape)
    }
}

/// Parses a decimal with no sign, no leading zeros and no spaces.
fn parse_canonical_u32(text: &str) -> Option<u32> {
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl Serialize for ModelShape {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelShape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> ModelShape {
        ModelShape {
            layers: 4,
            hidden: 256,
            heads: 8,
            vocab: 32000,
            context: 2048,
        }
    }

    #[test]
    fn shape_text_round_trips() {
        let text = shape().to_string();
        assert_eq!(text, "layers=4,hidden=256,heads=8,vocab=32000,context=2048");
        assert_eq!(text.parse(), Ok(shape()));
    }

    #[test]
    fn shape_keys_must_come_in_order() {
        let text = "hidden=256,layers=4,heads=8,vocab=32000,context=2048";
        assert_eq!(text.parse::<ModelShape>(), Err(ModelShapeError::Syntax));
    }

    #[test]
    fn shape_refuses_extra_fields_and_leading_zeros() {
        let extra = format!("{},experts=2", shape());
        assert_eq!(extra.parse::<ModelShape>(), Err(ModelShapeError::Syntax));
        let zeros = "layers=04,hidden=256,heads=8,vocab=32000,context=2048";
        assert_eq!(
            zeros.parse::<ModelShape>(),
            Err(ModelShapeError::Number("layers"))
        );
    }

    #[test]
    fn shape_refuses_zero_and_indivisible_heads() {
        let zero = "layers=0,hidden=256,heads=8,vocab=32000,context=2048";
        assert_eq!(
            zero.parse::<ModelShape>(),
            Err(ModelShapeError::Number("layers"))
        );
        let odd = "layers=4,hidden=250,heads=8,vocab=32000,context=2048";
        assert!(matches!(
            odd.parse::<ModelShape>(),
            Err(ModelShapeError::HeadsDoNotDivideHidden { .. })
        ));
    }

    #[test]
    fn quantization_names_and_codes_round_trip() {
        for q in Quantization::ALL {
            assert_eq!(q.name().parse(), Ok(q));
            assert_eq!(Quantization::from_code(q.code()), Some(q));
        }
        assert!("q5_k".parse::<Quantization>().is_err());
        assert_eq!(Quantization::from_code(3), None);
    }

    #[test]
    fn block_quantizations_need_whole_blocks() {
        assert_eq!(Quantization::Q8_0.tensor_bytes(64), Some(68));
        assert_eq!(Quantization::Q4_0.tensor_bytes(33), None);
        assert_eq!(Quantization::F32.tensor_bytes(u64::MAX), None);
    }
}
