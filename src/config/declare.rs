//! The one place a setting is declared: the [`settings!`] table. Each entry names the field,
//! its type (and value kind), default, flag value name, help text and validation; the TOML key
//! is the field name, the flag and the `CORECAST_*` variable follow from it unless the entry
//! says otherwise. From a table the macro generates the struct, its `Default`, the TOML
//! table's shape, the flags, the environment overlay, the checks and the [`Setting`] list
//! that `--help` and the docs test read.

use clap::{Arg, ArgMatches};

use super::{ConfigError, ENV_PREFIX};

/// One setting as the outside sees it: where it comes from and what it defaults to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The TOML table holding the key: `None` for the top level, else `auth` or `limits`.
    pub section: Option<&'static str>,
    /// The TOML key (also the field name).
    pub key: &'static str,
    /// The environment variable, `CORECAST_...`.
    pub env: String,
    /// The flag, without the leading `--`.
    pub flag: String,
    /// The placeholder of the flag's value in `--help` (`N`, `SIZE`, `DURATION`, ...).
    pub value_name: &'static str,
    /// The one-line help of the flag (without the default and variable, which are added).
    pub help: &'static str,
    /// The default, as `--help` and docs/configuration.md show it.
    pub default: String,
}

impl Setting {
    /// The flag with its generated help: `HELP [default: D] [env: CORECAST_X]`.
    pub(super) fn arg(&self) -> Arg {
        Arg::new(self.key)
            .long(self.flag.clone())
            .value_name(self.value_name)
            .help(format!(
                "{} [default: {}] [env: {}]",
                self.help, self.default, self.env
            ))
    }
}

/// A struct of settings the [`settings!`] table generated (the top level, `[auth]`,
/// `[limits]`); the layering in `config` works through this.
pub(super) trait Section: Default {
    /// The TOML table's shape: every key optional, unknown keys rejected.
    type File: serde::de::DeserializeOwned;

    /// Every setting of this struct and the sections it holds, in declaration order.
    fn settings(out: &mut Vec<Setting>);

    /// The flags of [`Section::settings`], same order.
    fn args(out: &mut Vec<Arg>);

    /// Set every key the TOML table has.
    fn overlay_file(&mut self, file: Self::File);

    /// Set every setting whose variable `env` has; a value that does not parse is an error
    /// naming the variable.
    fn overlay_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError>;

    /// Set every setting whose flag was given.
    fn overlay_matches(&mut self, m: &ArgMatches);

    /// Run each setting's check, in declaration order; the first failure is the error.
    fn check(&self) -> Result<(), ConfigError>;
}

/// The environment variable of a setting named `name` (the key, or the entry's `env`).
pub(super) fn env_var(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// The flag of key `key` (underscores become dashes), or the entry's `flag`.
pub(super) fn flag_name(key: &str, given: &[&str]) -> String {
    given
        .first()
        .map_or_else(|| key.replace('_', "-"), |f| f.to_string())
}

/// The name the variable is built from: the entry's `env`, else the key.
pub(super) fn env_base(key: &'static str, given: &[&'static str]) -> &'static str {
    given.first().copied().unwrap_or(key)
}

/// A failed check: "got GOT; allowed: ALLOWED".
pub(super) fn invalid(
    field: &'static str,
    got: impl std::fmt::Display,
    allowed: impl std::fmt::Display,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: format!("got {got}; allowed: {allowed}"),
    }
}

/// The kind of a declared field: the one named after `as`, else the type's own.
macro_rules! kind_of {
    ($ty:ty as $kind:ty) => {
        $kind
    };
    ($ty:ty) => {
        <$ty as $crate::config::kinds::HasKind>::Kind
    };
}

/// The second expression when there is one, else the first.
macro_rules! or_given {
    ($default:expr) => {
        $default
    };
    ($default:expr, $given:expr) => {
        $given
    };
}

/// Declare a struct of settings. Each entry:
///
/// ```text
/// /// Field doc.
/// field: Type [as Kind] = default, "VALUE_NAME", "flag help"
///     [, flag "other-flag"] [, env "other_name"] [, arg |a| tweak(a)]
///     [, check |value, config| ok => allowed [, got shown]]
///     [, each |item| ok => allowed];
/// ```
///
/// `check` sees the field and the whole struct (for settings bounded by another); `each`
/// checks every item of a list. The header may add `, nested { field: Section, }` (other
/// tables, `[auth]`) and `, extra { field: Type = default, }` (fields that are not settings).
macro_rules! settings {
    (
        $(#[$smeta:meta])*
        pub struct $Struct:ident, file $File:ident, section $section:expr
        $(, nested { $($(#[$nmeta:meta])* $nfield:ident: $nty:ident,)* })?
        $(, extra { $($(#[$emeta:meta])* $efield:ident: $ety:ty = $edefault:expr,)* })?;
        $(
            $(#[$fmeta:meta])*
            $field:ident: $ty:ty $(as $kind:ty)? = $default:expr, $value_name:literal, $help:literal
            $(, flag $flag:literal)?
            $(, env $env:literal)?
            $(, arg |$a:ident| $arg:expr)?
            $(, check |$v:ident, $c:pat_param| $ok:expr => $allowed:expr $(, got $got:expr)?)?
            $(, each |$item:ident| $iok:expr => $iallowed:expr)?
            ;
        )*
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $Struct {
            $($(#[$fmeta])* pub $field: $ty,)*
            $($($(#[$nmeta])* pub $nfield: $nty,)*)?
            $($($(#[$emeta])* pub $efield: $ety,)*)?
        }

        impl Default for $Struct {
            fn default() -> Self {
                $Struct {
                    $($field: $default,)*
                    $($($nfield: <$nty>::default(),)*)?
                    $($($efield: $edefault,)*)?
                }
            }
        }

        #[doc = concat!("The TOML table of [`", stringify!($Struct), "`].")]
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $File {
            $($field: Option<<$crate::config::declare::kind_of!($ty $(as $kind)?)
                as $crate::config::kinds::Kind>::File>,)*
            $($($nfield: Option<<$nty as $crate::config::declare::Section>::File>,)*)?
        }

        impl $Struct {
            /// This struct's own settings (not those of the sections it holds).
            fn own_settings() -> Vec<$crate::config::declare::Setting> {
                use $crate::config::{declare, kinds::Kind};
                let d = Self::default();
                vec![$(declare::Setting {
                    section: $section,
                    key: stringify!($field),
                    env: declare::env_var(declare::env_base(stringify!($field), &[$($env)?])),
                    flag: declare::flag_name(stringify!($field), &[$($flag)?]),
                    value_name: $value_name,
                    help: $help,
                    default: <declare::kind_of!($ty $(as $kind)?)>::show(&d.$field),
                },)*]
            }
        }

        impl $crate::config::declare::Section for $Struct {
            type File = $File;

            fn settings(out: &mut Vec<$crate::config::declare::Setting>) {
                out.extend(Self::own_settings());
                $($(<$nty as $crate::config::declare::Section>::settings(out);)*)?
            }

            fn args(out: &mut Vec<clap::Arg>) {
                use $crate::config::kinds::Kind;
                let mut own = Self::own_settings().into_iter();
                $({
                    let s = own.next().expect("one setting per field");
                    let arg = <$crate::config::declare::kind_of!($ty $(as $kind)?)>::arg(s.arg());
                    $(let arg = { let $a = arg; $arg };)?
                    out.push(arg);
                })*
                $($(<$nty as $crate::config::declare::Section>::args(out);)*)?
            }

            fn overlay_file(&mut self, file: $File) {
                use $crate::config::kinds::Kind;
                $(if let Some(v) = file.$field {
                    self.$field = <$crate::config::declare::kind_of!($ty $(as $kind)?)>::from_file(v);
                })*
                $($(if let Some(t) = file.$nfield {
                    $crate::config::declare::Section::overlay_file(&mut self.$nfield, t);
                })*)?
            }

            fn overlay_env(
                &mut self,
                env: &dyn Fn(&str) -> Option<String>,
            ) -> Result<(), $crate::config::ConfigError> {
                use $crate::config::{declare, kinds::Kind};
                $({
                    let field = declare::env_base(stringify!($field), &[$($env)?]);
                    let name = declare::env_var(field);
                    if let Some(raw) = env(&name) {
                        self.$field = <declare::kind_of!($ty $(as $kind)?)>::parse(&raw)
                            .map_err(|e| $crate::config::ConfigError::Invalid {
                                field,
                                message: format!("{name}={raw:?}: {e}"),
                            })?;
                    }
                })*
                $($(declare::Section::overlay_env(&mut self.$nfield, env)?;)*)?
                Ok(())
            }

            fn overlay_matches(&mut self, m: &clap::ArgMatches) {
                use $crate::config::kinds::Kind;
                $(if let Some(v) = <$crate::config::declare::kind_of!($ty $(as $kind)?)>
                    ::from_matches(m, stringify!($field))
                {
                    self.$field = v;
                })*
                $($($crate::config::declare::Section::overlay_matches(&mut self.$nfield, m);)*)?
            }

            fn check(&self) -> Result<(), $crate::config::ConfigError> {
                #[allow(unused_imports)]
                use $crate::config::kinds::Kind;
                $({
                    #[allow(dead_code)]
                    type K = $crate::config::declare::kind_of!($ty $(as $kind)?);
                    $({
                        let $v = &self.$field;
                        let $c = self;
                        if !($ok) {
                            let got: String =
                                $crate::config::declare::or_given!(K::got($v) $(, $got)?);
                            return Err($crate::config::declare::invalid(
                                stringify!($field), got, $allowed,
                            ));
                        }
                    })?
                    $(for item in &self.$field {
                        let $item: &str = item;
                        if !($iok) {
                            return Err($crate::config::declare::invalid(
                                stringify!($field), format!("{item:?}"), $iallowed,
                            ));
                        }
                    })?
                })*
                $($($crate::config::declare::Section::check(&self.$nfield)?;)*)?
                Ok(())
            }
        }
    };
}

pub(super) use kind_of;
pub(super) use or_given;
pub(super) use settings;
