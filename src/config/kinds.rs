//! The kinds of setting value (numbers, sizes, durations, paths, lists, enum names): for
//! each, how a flag or variable is parsed, how the TOML file writes it, and how a value is
//! shown in `--help`, the docs and error messages. Also the parsers the crate exports
//! (`parse_duration`, `parse_size`, `parse_bool`).

use std::{fmt, marker::PhantomData, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{Arg, ArgAction, ArgMatches, ValueEnum};
use serde::{de, de::DeserializeOwned, Deserialize, Deserializer};

pub(super) const KIB: usize = 1 << 10;
pub(super) const MIB: usize = 1 << 20;
pub(super) const GIB: usize = 1 << 30;

/// How one kind of setting value is read and written.
pub(super) trait Kind {
    /// The field's type in the configuration struct.
    type Value: Clone + Send + Sync + 'static;
    /// What the TOML file holds for it.
    type File: DeserializeOwned;

    /// Parse a flag's or an environment variable's text.
    fn parse(s: &str) -> Result<Self::Value, String>;

    /// The value a TOML entry stands for.
    fn from_file(f: Self::File) -> Self::Value;

    /// The value as `--help` and docs/configuration.md show a default.
    fn show(v: &Self::Value) -> String;

    /// The value as a validation error shows what it got.
    fn got(v: &Self::Value) -> String {
        Self::show(v)
    }

    /// Give the flag its value parser (and, for lists, how it repeats).
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(Self::parse as fn(&str) -> Result<Self::Value, String>)
            .action(ArgAction::Set)
    }

    /// The flag's value, if it was given.
    fn from_matches(m: &ArgMatches, id: &str) -> Option<Self::Value> {
        m.get_one::<Self::Value>(id).cloned()
    }
}

/// The kind a field type has unless its declaration names another (`usize as Bytes`).
pub(super) trait HasKind {
    /// That kind.
    type Kind: Kind<Value = Self>;
}

/// Anything with `FromStr`, `Display` and `Deserialize`: numbers and socket addresses.
pub(super) struct Plain<T>(PhantomData<T>);

impl<T> Kind for Plain<T>
where
    T: FromStr + fmt::Display + DeserializeOwned + Clone + Send + Sync + 'static,
    T::Err: fmt::Display,
{
    type Value = T;
    type File = T;
    fn parse(s: &str) -> Result<T, String> {
        s.trim().parse().map_err(|e| format!("{e}"))
    }
    fn from_file(f: T) -> T {
        f
    }
    fn show(v: &T) -> String {
        v.to_string()
    }
}

/// A boolean: see [`parse_bool`]; a TOML boolean in the file.
pub(super) struct Switch;

impl Kind for Switch {
    type Value = bool;
    type File = bool;
    fn parse(s: &str) -> Result<bool, String> {
        parse_bool(s)
    }
    fn from_file(f: bool) -> bool {
        f
    }
    fn show(v: &bool) -> String {
        v.to_string()
    }
}

/// A byte count: see [`parse_size`]; a size string or an integer in the file.
pub(super) struct Bytes;

impl Kind for Bytes {
    type Value = usize;
    type File = FileSize;
    fn parse(s: &str) -> Result<usize, String> {
        parse_size(s)
    }
    fn from_file(f: FileSize) -> usize {
        f.0
    }
    /// The largest exact binary unit from KiB up ("8KiB"), else the bare number ("256").
    fn show(v: &usize) -> String {
        for (unit, scale) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if *v >= scale && v % scale == 0 {
                return format!("{}{unit}", v / scale);
            }
        }
        v.to_string()
    }
    fn got(v: &usize) -> String {
        Size(*v).to_string()
    }
}

/// A duration: see [`parse_duration`]; a duration string or whole seconds in the file.
pub(super) struct Interval;

impl Kind for Interval {
    type Value = Duration;
    type File = FileDuration;
    fn parse(s: &str) -> Result<Duration, String> {
        parse_duration(s)
    }
    fn from_file(f: FileDuration) -> Duration {
        f.0
    }
    fn show(v: &Duration) -> String {
        Human(*v).to_string()
    }
}

/// An optional file path ("none" when unset).
pub(super) struct OptPath;

impl Kind for OptPath {
    type Value = Option<PathBuf>;
    type File = PathBuf;
    fn parse(s: &str) -> Result<Option<PathBuf>, String> {
        Ok(Some(PathBuf::from(s)))
    }
    fn from_file(f: PathBuf) -> Option<PathBuf> {
        Some(f)
    }
    fn show(v: &Option<PathBuf>) -> String {
        v.as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string())
    }
}

/// Free text, taken as it is.
pub(super) struct Text;

impl Kind for Text {
    type Value = String;
    type File = String;
    fn parse(s: &str) -> Result<String, String> {
        Ok(s.to_string())
    }
    fn from_file(f: String) -> String {
        f
    }
    fn show(v: &String) -> String {
        v.clone()
    }
    fn got(v: &String) -> String {
        format!("{v:?}")
    }
}

/// A list of names: the flag repeats or takes commas, the variable takes commas (blanks and
/// empty items dropped), the file takes an array of strings.
pub(super) struct List;

impl Kind for List {
    type Value = Vec<String>;
    type File = Vec<String>;
    fn parse(s: &str) -> Result<Vec<String>, String> {
        Ok(s.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect())
    }
    fn from_file(f: Vec<String>) -> Vec<String> {
        f
    }
    fn show(v: &Vec<String>) -> String {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(",")
        }
    }
    fn arg(arg: Arg) -> Arg {
        arg.value_delimiter(',').action(ArgAction::Append)
    }
    fn from_matches(m: &ArgMatches, id: &str) -> Option<Vec<String>> {
        m.get_many::<String>(id).map(|v| v.cloned().collect())
    }
}

/// One of an enum's names, in any case for flags and variables (the file follows the enum's
/// `Deserialize`).
pub(super) struct Choice<E>(PhantomData<E>);

impl<E> Kind for Choice<E>
where
    E: ValueEnum + DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Value = E;
    type File = E;
    fn parse(s: &str) -> Result<E, String> {
        E::from_str(s.trim(), true).map_err(|_| {
            let names: Vec<String> = E::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value())
                .map(|p| p.get_name().to_string())
                .collect();
            format!("expected one of {}", names.join(", "))
        })
    }
    fn from_file(f: E) -> E {
        f
    }
    fn show(v: &E) -> String {
        v.to_possible_value()
            .map(|p| p.get_name().to_string())
            .unwrap_or_default()
    }
}

macro_rules! has_kind {
    ($($ty:ty => $kind:ty),* $(,)?) => {
        $(impl HasKind for $ty {
            type Kind = $kind;
        })*
    };
}

has_kind! {
    bool => Switch,
    u8 => Plain<u8>,
    u32 => Plain<u32>,
    usize => Plain<usize>,
    SocketAddr => Plain<SocketAddr>,
    Duration => Interval,
    Option<PathBuf> => OptPath,
    String => Text,
    Vec<String> => List,
}

/// A TOML duration: a string `parse_duration` accepts, or an integer number of seconds.
#[derive(Debug)]
pub(super) struct FileDuration(Duration);

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = FileDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"25s\", \"500ms\", \"2m\", \"1h\", or whole seconds",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileDuration, E> {
                Ok(FileDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileDuration, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileDuration, E> {
                parse_duration(v).map(FileDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A TOML byte size: a string `parse_size` accepts, or an integer number of bytes.
#[derive(Debug)]
pub(super) struct FileSize(usize);

impl<'de> Deserialize<'de> for FileSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = FileSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"8KiB\", \"16MiB\", \"64KB\", or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileSize, E> {
                usize::try_from(v)
                    .map(FileSize)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileSize, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileSize, E> {
                parse_size(v).map(FileSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse a boolean: `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`, in any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "invalid boolean {s:?}: expected true/false, yes/no, on/off or 1/0"
        )),
    }
}

/// Parse a duration: `"500ms"`, `"25s"`, `"2m"`, `"1h"`, or a bare whole number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {s:?}: expected a whole number with unit ms, s, m or h \
             (e.g. \"500ms\", \"25s\", \"2m\", \"1h\"), or bare seconds"
        )
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let too_big = || format!("duration {s:?} is too large");
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_big),
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_big),
        _ => Err(bad()),
    }
}

/// Parse a byte size: `"4096"`, `"4096B"`, `"64KB"` (KB = 1000), `"8KiB"`, `"16MiB"`, `"1GiB"`.
///
/// Units (case-insensitive): B, KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bad = || {
        format!(
            "invalid size {s:?}: expected a whole number of bytes with an optional unit \
             B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. \"8KiB\""
        )
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Split `" 25 ms "` into `(25, "ms")`; `None` without leading digits or on overflow.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(end);
    if digits.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, unit.trim_start()))
}

/// Shows a byte count in the largest exact binary unit ("16MiB"), else as "N bytes".
pub(super) struct Size(pub(super) usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, scale) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if n >= scale && n % scale == 0 {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n} bytes")
    }
}

/// Shows a duration in the largest exact unit of h, m, s, ms ("25s", "1500ms").
pub(super) struct Human(pub(super) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() % 1_000_000 != 0 {
            return write!(f, "{d:?}");
        }
        let ms = d.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, scale) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms % scale == 0 {
                return write!(f, "{}{unit}", ms / scale);
            }
        }
        write!(f, "{ms}ms")
    }
}
