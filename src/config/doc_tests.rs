//! docs/configuration.md against the declarations: every setting's key, variable, flag and
//! default is in the settings tables, every documented key is declared, and the "every key"
//! example file sets every key.

use super::*;

const DOC: &str = include_str!("../../docs/configuration.md");

/// The cells of a Markdown table row, trimmed, with `\|` read as `|`.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// The body rows of every table whose first header cell is `header`.
fn tables(header: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in DOC.lines() {
        if !line.trim_start().starts_with('|') {
            inside = false;
            continue;
        }
        let row = cells(line);
        if row[0] == header {
            inside = true;
        } else if inside && !row[0].starts_with("---") && !row[0].starts_with(":-") {
            rows.push(row);
        }
    }
    assert!(
        !rows.is_empty(),
        "no table headed {header:?} in docs/configuration.md"
    );
    rows
}

/// How a setting is named in the first column: `` `key` `` or `` `[section] key` ``.
fn doc_key(s: &Setting) -> String {
    match s.section {
        None => format!("`{}`", s.key),
        Some(section) => format!("`[{section}] {}`", s.key),
    }
}

/// Whether a default cell shows `default`: `` `0` (off) `` shows `0`; unset paths and empty
/// lists are "none".
fn shows_default(cell: &str, default: &str) -> bool {
    if default == "none" {
        cell == "none"
    } else {
        cell == format!("`{default}`") || cell.starts_with(&format!("`{default}` "))
    }
}

#[test]
fn settings_tables_match_the_declarations() {
    let rows = tables("TOML key");
    let settings = Config::settings();
    for s in &settings {
        let key = doc_key(s);
        let found: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == key).collect();
        assert_eq!(
            found.len(),
            1,
            "{key} should have one row in docs/configuration.md"
        );
        let row = found[0];
        assert_eq!(row[1], format!("`{}`", s.env), "{key}: variable");
        let flag = format!("`--{}", s.flag);
        assert!(
            row[2].starts_with(&flag)
                && matches!(row[2][flag.len()..].chars().next(), Some(' ' | '`')),
            "{key}: flag should be {flag}, the row says {:?}",
            row[2]
        );
        assert!(
            shows_default(&row[3], &s.default),
            "{key}: default should be `{}`, the row says {:?}",
            s.default,
            row[3]
        );
    }
    // Every documented key is declared (the `--config` row has no key).
    for row in &rows {
        if row[0] == "—" {
            assert_eq!(row[1], format!("`{CONFIG_ENV}`"));
            assert!(row[2].starts_with("`--config "), "{row:?}");
            continue;
        }
        assert!(
            settings.iter().any(|s| doc_key(s) == row[0]),
            "docs/configuration.md documents {} but no such setting is declared",
            row[0]
        );
    }
}

#[test]
fn deflate_defaults_table_matches() {
    let settings = Config::settings();
    for row in tables("setting") {
        let s = settings
            .iter()
            .find(|s| doc_key(s) == row[0])
            .unwrap_or_else(|| panic!("{} is not a setting", row[0]));
        assert!(shows_default(&row[1], &s.default), "{row:?}");
    }
}

/// The first TOML block of the doc: the example file that sets every key.
fn example_file() -> &'static str {
    let start = DOC.find("```toml\n").expect("example in docs") + "```toml\n".len();
    &DOC[start..start + DOC[start..].find("```").unwrap()]
}

#[test]
fn example_file_sets_every_key() {
    let text = example_file();
    let table: toml::Table = toml::from_str(text).unwrap();
    for s in Config::settings() {
        let holder = match s.section {
            None => Some(&table),
            Some(section) => table.get(section).and_then(|t| t.as_table()),
        };
        let set = holder.is_some_and(|t| t.contains_key(s.key));
        // A path has no value that means "none": the example shows it commented out.
        let commented = s.default == "none"
            && text
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("# {} = ", s.key)));
        assert!(
            set || commented,
            "the example file in docs/configuration.md lacks {}",
            doc_key(&s)
        );
    }
}

#[test]
fn help_shows_each_declared_default_and_variable() {
    let Err(ConfigError::Cli(help)) = from_args(["corecast", "--help"]) else {
        panic!("--help should come back as ConfigError::Cli")
    };
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for s in Config::settings() {
        let want = format!("[default: {}] [env: {}]", s.default, s.env);
        assert!(
            help.contains(&want),
            "--{}: {want} missing from --help",
            s.flag
        );
    }
}
