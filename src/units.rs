//! Humane values in configuration and policy files: durations (`"90s"`, `"5m"`,
//! `"1h30m"`), byte sizes (`"10MiB"`) and rates (`"60/min"`).
//!
//! Each parses in its `Deserialize` impl, so a bad value fails inside the TOML parser and
//! the error keeps the line and column of the value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};

/// A duration written as one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid duration {s:?}: expected e.g. \"90s\", \"5m\", \"12h\", \"1h30m\", \"250ms\"");
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 12 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let part = match &rest[..unit_len] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                "d" => Duration::from_secs(n * 86_400),
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        Ok(Self(total))
    }
}

/// A byte count: a bare integer, or an integer with `B`, `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid size {s:?}: expected e.g. \"10MiB\", \"512KiB\", \"1000000\"");
        let t = s.trim();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 15 {
            return Err(bad());
        }
        let n: u64 = t[..digits].parse().map_err(|_| bad())?;
        let mult: u64 = match t[digits..].trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(Self).ok_or_else(bad)
    }
}

/// A rate: `N/sec`, `N/min` or `N/hour` (also `s`, `second`, `m`, `minute`, `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid rate {s:?}: expected e.g. \"60/min\", \"10/sec\", \"1000/hour\"");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("invalid rate {s:?}: the count must be at least 1"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        // Limiters count in microseconds: one request per microsecond is the finest rate.
        if u128::from(count) > per.as_micros() {
            return Err(format!("invalid rate {s:?}: at most 1000000/sec"));
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "sec",
            60 => "min",
            _ => "hour",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    )*};
}

deserialize_from_str!(HumanDuration, ByteSize, Rate);

#[cfg(test)]
mod tests {
    use super::*;

    // Durations accept each unit and compound forms, and refuse anything else.
    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("90d"), Ok(Duration::from_secs(90 * 86_400)));
        for bad in ["", "5", "m", "5 m", "-5s", "5x", "1.5h", "99999999999999s"] {
            assert!(d(bad).is_err(), "{bad:?} accepted");
        }
    }

    // Sizes know binary and decimal units.
    #[test]
    fn sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("10MiB"), Ok(10 << 20));
        assert_eq!(b("1000"), Ok(1000));
        assert_eq!(b("2 KB"), Ok(2000));
        assert!(b("10 mebibytes").is_err());
        assert!(b("").is_err());
    }

    // Rates need a positive count and a known period.
    #[test]
    fn rates() {
        let r: Rate = "60/min".parse().unwrap();
        assert_eq!((r.count, r.per), (60, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "60/min");
        assert!("0/min".parse::<Rate>().is_err());
        assert_eq!("5000/sec".parse::<Rate>().map(|r| r.count), Ok(5000));
        assert_eq!("1000000/sec".parse::<Rate>().map(|r| r.count), Ok(1_000_000));
        assert!("1000001/sec".parse::<Rate>().is_err());
        assert!("60/fortnight".parse::<Rate>().is_err());
        assert!("sixty/min".parse::<Rate>().is_err());
    }
}
