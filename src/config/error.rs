//! Configuration errors that point at the file, line, column and key, and say what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the offending text could be located.
    pub(crate) line_col: Option<(usize, usize)>,
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
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// One step of a key path: a table key or an index into an array (of tables).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

pub(crate) fn path_string(path: &[Seg]) -> String {
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
pub(crate) fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
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

/// The dotted key path whose key or value covers byte `span.start` of the TOML `text`, e.g.
/// `loop.control_hz` for a type error in its value: what a serde error (which knows only the
/// span) is about. Text that does not parse (a duplicate key) is read line by line instead.
pub(crate) fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    match toml_edit::Document::parse(text) {
        Ok(doc) => {
            let mut path = Vec::new();
            find(doc.as_item(), span.start, &mut path).then(|| join(&path))
        }
        Err(_) => key_by_lines(text, span),
    }
}

fn contains(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn join(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if !s.is_empty() && !p.starts_with('[') {
            s.push('.');
        }
        s.push_str(p);
    }
    s
}

/// Depth-first: the deepest key or value at `offset`, its path in `path`.
fn find(item: &toml_edit::Item, offset: usize, path: &mut Vec<String>) -> bool {
    use toml_edit::{Item, Value};
    let in_table = |keys: Vec<(&toml_edit::Key, &Item)>, path: &mut Vec<String>| {
        for (k, v) in keys {
            path.push(k.get().to_string());
            if find(v, offset, path) || contains(k.span(), offset) || contains(v.span(), offset) {
                return true;
            }
            path.pop();
        }
        false
    };
    match item {
        Item::Table(t) => in_table(t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect(), path),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(format!("[{i}]"));
                if in_table(t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect(), path)
                    || contains(t.span(), offset)
                {
                    return true;
                }
                path.pop();
            }
            false
        }
        Item::Value(Value::InlineTable(t)) => {
            in_table(t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect(), path)
        }
        Item::Value(Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                if contains(v.span(), offset) {
                    path.push(format!("[{i}]"));
                    let inner = Item::Value(v.clone());
                    find(&inner, offset, path);
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// For text toml_edit refuses (a duplicate key): the key written at `span` and the table header
/// above it (`[[x]]` headers counted, so the n-th is `x[n-1]`).
fn key_by_lines(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let word = text.get(span).unwrap_or("").trim().trim_matches(['"', '\'']);
    let key_like = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    let mut table = String::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for l in text[..line_start].lines().map(str::trim) {
        if let Some(h) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let h = h.trim().to_string();
            let n = match seen.iter_mut().find(|(k, _)| *k == h) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((h.clone(), 0));
                    0
                }
            };
            table = format!("{h}[{n}]");
        } else if let Some(h) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = h.trim().to_string();
        }
    }
    if line.starts_with('[') {
        // A table header itself (a table defined twice).
        let h = line.trim_start_matches('[').split(']').next().unwrap_or("").trim();
        return key_like(h).then(|| h.to_string());
    }
    let key = if key_like(word) { word.to_string() } else { line.split('=').next()?.trim().to_string() };
    if !key_like(&key) {
        return None;
    }
    Some(if table.is_empty() { key } else { format!("{table}.{key}") })
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
