//! Kubernetes resource quantities (`500m`, `1.5`, `128Mi`, `1e3`) parsed
//! exactly, without floating point, as `resource.Quantity` does.

use std::fmt;

/// A parsed quantity, held in nano units (10^-9) rounded up, so that both
/// `MilliValue` and `Value` come out as Kubernetes computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity {
    nanos: i128,
}

/// Why a quantity string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not of the form `<signedNumber><suffix>`.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// Larger than Kubernetes allows (2^63-1).
    #[error("quantity too large")]
    TooLarge,
}

const NANO: i128 = 1_000_000_000;
const MAX: i128 = i64::MAX as i128 * NANO;

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// Parse `s` as Kubernetes does (`resource.ParseQuantity`).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(QuantityError::Format);
        }
        let (neg, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || frac_part.contains('.')
            || number.matches('.').count() > 1
        {
            return Err(QuantityError::Format);
        }
        // value = digits * 10^(exp10 - frac_len) * 2^exp2
        let (exp10, exp2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other => {
                let exp = other
                    .strip_prefix(['e', 'E'])
                    .ok_or(QuantityError::Format)?;
                let body = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QuantityError::Format);
                }
                let e: i32 = exp.parse().map_err(|_| QuantityError::TooLarge)?;
                (e, 0)
            }
        };
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        // nanos = digits * 10^shift * 2^exp2
        let shift = i64::from(exp10) + 9 - frac_part.len() as i64;
        let (kept, dropped) = if shift >= 0 {
            (digits, "")
        } else {
            digits.split_at(digits.len().saturating_sub(shift.unsigned_abs() as usize))
        };
        let mut nanos: i128 = 0;
        for b in kept.bytes() {
            nanos = nanos
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .filter(|m| *m <= MAX)
                .ok_or(QuantityError::TooLarge)?;
        }
        for _ in 0..shift.max(0) {
            if nanos == 0 {
                break;
            }
            nanos = nanos
                .checked_mul(10)
                .filter(|m| *m <= MAX)
                .ok_or(QuantityError::TooLarge)?;
        }
        nanos = nanos
            .checked_mul(1i128 << exp2)
            .ok_or(QuantityError::TooLarge)?;
        // Precision below a nano rounds up, never down to zero.
        if dropped.bytes().any(|b| b != b'0') {
            nanos += 1;
        }
        if nanos > MAX {
            return Err(QuantityError::TooLarge);
        }
        Ok(Quantity {
            nanos: if neg { -nanos } else { nanos },
        })
    }

    /// From a whole number of units (bytes, cores).
    pub fn from_value(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * NANO,
        }
    }

    /// From millis (millicores).
    pub fn from_milli(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * 1_000_000,
        }
    }

    /// The value in whole units, rounded up (`Quantity.Value()`: bytes).
    pub fn value(&self) -> i64 {
        ceil_div(self.nanos, NANO)
    }

    /// The value in thousandths, rounded up (`Quantity.MilliValue()`: millicores).
    pub fn milli_value(&self) -> i64 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// The value divided by `divisor`, rounded up, at least 1 when nonzero:
    /// what `resourceFieldRef` with a divisor yields (`ExtractContainerResourceValue`).
    pub fn div_ceil(&self, divisor: &Quantity) -> Option<i64> {
        if divisor.nanos <= 0 {
            return None;
        }
        Some(ceil_div(self.nanos, divisor.nanos))
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
}

fn ceil_div(a: i128, b: i128) -> i64 {
    let q = a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0);
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANO == 0 {
            write!(f, "{}", self.nanos / NANO)
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

/// Parse a k8s-openapi quantity.
pub fn parse(
    q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) -> Result<Quantity, QuantityError> {
    Quantity::parse(&q.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_forms() {
        let cases: &[(&str, i64, i64)] = &[
            // (input, MilliValue, Value)
            ("1", 1000, 1),
            ("500m", 500, 1),
            ("0.5", 500, 1),
            ("1.5", 1500, 2),
            (".1", 100, 1),
            ("2.", 2000, 2),
            ("100m", 100, 1),
            ("0.1m", 1, 1), // rounded up to 1m, as the Quantity docs say
            ("128Mi", 134_217_728_000, 134_217_728),
            ("1Gi", 1_073_741_824_000, 1_073_741_824),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1k", 1_000_000, 1000),
            ("1M", 1_000_000_000, 1_000_000),
            ("1e3", 1_000_000, 1000),
            ("1E3", 1_000_000, 1000),
            ("12e-3", 12, 1),
            ("+3", 3000, 3),
            ("1n", 1, 1),
            ("1u", 1, 1),
            ("0", 0, 0),
            ("000", 0, 0),
        ];
        for (s, milli, value) in cases {
            let q = Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(q.milli_value(), *milli, "{s} milli");
            assert_eq!(q.value(), *value, "{s} value");
        }
        assert!(Quantity::parse("-1").unwrap().is_negative());
        assert_eq!(Quantity::parse("-500m").unwrap().milli_value(), -500);
    }

    #[test]
    fn bad_forms_rejected() {
        for s in [
            "", "abc", "1Ki2", "1.2.3", "Mi", "1 Mi", "1mi", "1e", "1e+", ".", "1KiB", "--1",
        ] {
            assert_eq!(Quantity::parse(s), Err(QuantityError::Format), "{s:?}");
        }
        assert_eq!(Quantity::parse("100Ei"), Err(QuantityError::TooLarge));
        assert_eq!(Quantity::parse("1e30"), Err(QuantityError::TooLarge));
    }

    #[test]
    fn divisor_rounds_up() {
        let mem = Quantity::parse("128Mi").unwrap();
        assert_eq!(mem.div_ceil(&Quantity::parse("1Mi").unwrap()), Some(128));
        assert_eq!(mem.div_ceil(&Quantity::parse("1Gi").unwrap()), Some(1));
        let cpu = Quantity::parse("250m").unwrap();
        assert_eq!(cpu.div_ceil(&Quantity::parse("1").unwrap()), Some(1));
        assert_eq!(cpu.div_ceil(&Quantity::parse("1m").unwrap()), Some(250));
        assert_eq!(cpu.div_ceil(&Quantity::ZERO), None);
        assert!(Quantity::parse("1").unwrap() > Quantity::parse("999m").unwrap());
    }
}
