//! The message mix: which kind of request to send next, from `--mix auth=80,...` weights.

use std::fmt;
use std::str::FromStr;

/// Largest weight of one kind; keeps the total far inside `u32`.
pub const WEIGHT_MAX: u32 = 1_000_000;
/// Number of request kinds.
pub const KIND_COUNT: usize = 5;

/// What the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 0100 for a new purchase.
    Auth,
    /// 0100 with DE90 naming an earlier approved 0100 of the same card.
    Incremental,
    /// 0400 with DE90 naming an earlier approved 0100, partial when DE95 is present.
    Reversal,
    /// 0120 stand-in advice.
    Advice,
    /// 0800 with DE70=301.
    Echo,
}

impl Kind {
    pub const ALL: [Kind; KIND_COUNT] = [
        Kind::Auth,
        Kind::Incremental,
        Kind::Reversal,
        Kind::Advice,
        Kind::Echo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Incremental => "incremental",
            Kind::Reversal => "reversal",
            Kind::Advice => "advice",
            Kind::Echo => "echo",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("unknown kind {name:?} (kinds: auth, incremental, reversal, advice, echo)")]
    UnknownKind { name: String },
    #[error("{kind}: weight is not a whole number")]
    BadWeight { kind: &'static str },
    #[error("{kind}: weight exceeds {max}")]
    WeightTooLarge { kind: &'static str, max: u32 },
    #[error("{kind} given twice")]
    Duplicate { kind: &'static str },
    #[error("entry {entry:?} is not kind=weight")]
    NotAPair { entry: String },
    #[error("all weights are zero")]
    AllZero,
}

/// Weights per kind; kinds not named in the spec weigh 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; KIND_COUNT],
    total: u32,
}

impl Mix {
    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights[kind.index()]
    }

    /// Sum of all weights; `pick` takes a roll in `0..total`.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The kind a uniform roll in `0..total()` lands on.
    pub fn pick(&self, roll: u32) -> Kind {
        assert!(roll < self.total, "roll {roll} outside 0..{}", self.total);
        let mut rest = roll;
        for kind in Kind::ALL {
            let weight = self.weights[kind.index()];
            if rest < weight {
                return kind;
            }
            rest -= weight;
        }
        unreachable!("weights sum to total")
    }
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(spec: &str) -> Result<Mix, MixError> {
        let mut weights = [0u32; KIND_COUNT];
        let mut seen = [false; KIND_COUNT];
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, weight) = entry.split_once('=').ok_or_else(|| MixError::NotAPair {
                entry: entry.chars().take(32).collect(),
            })?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| MixError::UnknownKind {
                    name: name.trim().chars().take(32).collect(),
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| MixError::BadWeight { kind: kind.name() })?;
            if weight > WEIGHT_MAX {
                return Err(MixError::WeightTooLarge {
                    kind: kind.name(),
                    max: WEIGHT_MAX,
                });
            }
            if std::mem::replace(&mut seen[kind.index()], true) {
                return Err(MixError::Duplicate { kind: kind.name() });
            }
            weights[kind.index()] = weight;
        }
        let total = weights.iter().sum();
        if total == 0 {
            return Err(MixError::AllZero);
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in Kind::ALL {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={}", kind.name(), self.weight(kind))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_default() {
        let mix: Mix = "auth=80,incremental=5,reversal=8,advice=5,echo=2"
            .parse()
            .unwrap();
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.weight(Kind::Auth), 80);
        assert_eq!(mix.weight(Kind::Reversal), 8);
        assert_eq!(
            mix.to_string(),
            "auth=80,incremental=5,reversal=8,advice=5,echo=2"
        );
    }

    #[test]
    fn missing_kinds_weigh_zero_and_spaces_are_allowed() {
        let mix: Mix = " echo = 3 , auth=1 ".parse().unwrap();
        assert_eq!(mix.total(), 4);
        assert_eq!(mix.weight(Kind::Incremental), 0);
        assert_eq!(mix.pick(0), Kind::Auth);
        assert_eq!(mix.pick(1), Kind::Echo);
        assert_eq!(mix.pick(3), Kind::Echo);
    }

    #[test]
    fn pick_walks_the_cumulative_weights() {
        let mix: Mix = "auth=2,incremental=1,reversal=1,advice=1,echo=1"
            .parse()
            .unwrap();
        let picked: Vec<Kind> = (0..6).map(|r| mix.pick(r)).collect();
        assert_eq!(
            picked,
            [
                Kind::Auth,
                Kind::Auth,
                Kind::Incremental,
                Kind::Reversal,
                Kind::Advice,
                Kind::Echo
            ]
        );
    }

    #[test]
    fn rejects_bad_specs_with_the_reason() {
        let err = |s: &str| s.parse::<Mix>().unwrap_err();
        assert_eq!(
            err("auth=1,refund=2"),
            MixError::UnknownKind {
                name: "refund".into()
            }
        );
        assert_eq!(err("auth=x"), MixError::BadWeight { kind: "auth" });
        assert_eq!(err("auth=-1"), MixError::BadWeight { kind: "auth" });
        assert_eq!(err("auth=1,auth=2"), MixError::Duplicate { kind: "auth" });
        assert_eq!(
            err("auth"),
            MixError::NotAPair {
                entry: "auth".into()
            }
        );
        assert_eq!(err("auth=0,echo=0"), MixError::AllZero);
        assert_eq!(err(""), MixError::AllZero);
        assert_eq!(
            err("echo=1000001"),
            MixError::WeightTooLarge {
                kind: "echo",
                max: WEIGHT_MAX
            }
        );
    }
}
