//! Configuration errors that point at the file, line, column and key, and say what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the offending text could be located.
    pub line_col: Option<(usize, usize)>,
    /// Dotted key path, e.g. `joint[2].bus`.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn io(file: &Path, err: &std::io::Error) -> Self {
        Self { file: file.to_path_buf(), line_col: None, key: None, message: err.to_string() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.line_col {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// One step of a key path: a table key or an index into an array (of tables).
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
}

pub fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Finds where `path` is written in the TOML `text`: the key itself when it is present, else the
/// closest enclosing table that is.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut best = None;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => item
                .as_table_like()
                .and_then(|t| t.get_key_value(k))
                .map(|(key, value)| (key.span().or(value.span()), value)),
            Seg::Index(i) => item.get(*i).map(|v| (v.span().or(v.as_table().and_then(|t| t.span())), v)),
        };
        let Some((span, value)) = next else { break };
        best = span.or(best);
        item = value;
    }
    best.map(|span| line_col(text, span.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn locates_keys_in_arrays_of_tables() {
        let text = "[robot]\nname = \"x\"\n\n[[joint]]\nname = \"a\"\n\n[[joint]]\nname = \"b\"\nbus = \"can9\"\n";
        let at = locate(text, &[Seg::Key("joint"), Seg::Index(1), Seg::Key("bus")]);
        assert_eq!(at, Some((9, 1)));
        assert_eq!(path_string(&[Seg::Key("joint"), Seg::Index(1), Seg::Key("bus")]), "joint[1].bus");
        // A key that is absent points at its table.
        let at = locate(text, &[Seg::Key("joint"), Seg::Index(0), Seg::Key("bus")]);
        assert_eq!(at.map(|(l, _)| l), Some(4));
    }
}
