//! Env files: `stack.env_file` (the variables of `${VAR}` in the compose file,
//! like Compose's `--env-file`) and a service's `env_file:` (variables of its
//! containers). Compose v1 reads both with python-dotenv; this reads the same
//! format:
//!
//! - one `KEY=VALUE` per line, optionally prefixed by `export `; blank lines
//!   and lines starting with `#` are skipped; spaces around `=` are allowed;
//! - `'single quoted'` values may span lines and know no escapes;
//! - `"double quoted"` values may span lines and know the escapes `\n`, `\t`,
//!   `\r`, `\"`, `\\` (and `\'`);
//! - unquoted values end at ` #` (a comment) and are trimmed;
//! - every value expands `${NAME}` and `${NAME:-default}` (not `$NAME`), even
//!   single-quoted ones, as the python-dotenv that Debian's Compose v1 uses
//!   does: from the keys defined earlier in the same file, then from `env`;
//!   the default applies only to an unset name, and unset is empty.
//!
//! Invariant: a line that is not one of these is an error naming its line and
//! column, never skipped, so a typo cannot silently drop a variable.

use std::path::Path;

use indexmap::IndexMap;

use super::error::ComposeError;

/// Reads and parses the env file at `path`.
pub(crate) fn read(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, ComposeError> {
    let text = super::read_file(path)?;
    parse(&text, env)
        .map_err(|(line, column, message)| ComposeError::at_line(path, line, column, message))
}

/// Parses an env file's text; an error is (line, column, message), 1-based.
pub(crate) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, (usize, usize, String)> {
    // python-dotenv skips a UTF-8 byte order mark (Compose opens with utf-8-sig).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: IndexMap<String, String> = IndexMap::new();
    let mut cursor = Cursor {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        column: 1,
    };
    loop {
        cursor.skip_blank();
        let Some(c) = cursor.peek() else { break };
        if c == '\n' {
            cursor.bump();
            continue;
        }
        if c == '#' {
            cursor.skip_line();
            continue;
        }
        let (line, column) = (cursor.line, cursor.column);
        let fail = |message: String| (line, column, message);
        let mut key = cursor.take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if key == "export" && cursor.peek().is_some_and(|c| c == ' ' || c == '\t') {
            cursor.skip_blank();
            key = cursor.take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        }
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(fail(
                "expected KEY=VALUE with a name of letters, digits and `_`".to_string(),
            ));
        }
        cursor.skip_blank();
        if cursor.peek() != Some('=') {
            return Err(fail(format!("expected `=` after {key}")));
        }
        cursor.bump();
        cursor.skip_blank();
        let lookup = |name: &str| out.get(name).cloned().or_else(|| env(name));
        let value = match cursor.peek() {
            Some('\'') => {
                cursor.bump();
                let value = cursor.take_while(|c| c != '\'');
                if cursor.bump() != Some('\'') {
                    return Err(fail(format!("{key}: no closing `'`")));
                }
                cursor.end_of_value().map_err(fail)?;
                expand(&value, &lookup)
            }
            Some('"') => {
                cursor.bump();
                let mut raw = String::new();
                loop {
                    match cursor.bump() {
                        None => return Err(fail(format!("{key}: no closing `\"`"))),
                        Some('"') => break,
                        Some('\\') => match cursor.bump() {
                            Some('n') => raw.push('\n'),
                            Some('t') => raw.push('\t'),
                            Some('r') => raw.push('\r'),
                            Some(c @ ('"' | '\\' | '\'')) => raw.push(c),
                            Some(c) => {
                                raw.push('\\');
                                raw.push(c);
                            }
                            None => return Err(fail(format!("{key}: no closing `\"`"))),
                        },
                        Some(c) => raw.push(c),
                    }
                }
                cursor.end_of_value().map_err(fail)?;
                expand(&raw, &lookup)
            }
            _ => {
                let mut raw = String::new();
                while let Some(c) = cursor.peek() {
                    if c == '\n' || (c == '#' && raw.ends_with([' ', '\t'])) {
                        break;
                    }
                    raw.push(c);
                    cursor.bump();
                }
                cursor.skip_line();
                expand(raw.trim(), &lookup)
            }
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// python-dotenv's expansion: `${NAME}` and `${NAME:-default}` only.
fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + 2 + len];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        out.push_str(&rest[..start]);
        match lookup(name) {
            Some(v) => out.push_str(&v),
            None => out.push_str(default.unwrap_or("")),
        }
        rest = &rest[start + 2 + len + 1..];
    }
    out.push_str(rest);
    out
}

struct Cursor {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(|c| keep(*c)) {
            out.push(c);
            self.bump();
        }
        out
    }

    fn skip_blank(&mut self) {
        while self
            .peek()
            .is_some_and(|c| c == ' ' || c == '\t' || c == '\r')
        {
            self.bump();
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    /// After a closing quote: only blanks and a comment may follow.
    fn end_of_value(&mut self) -> Result<(), String> {
        self.skip_blank();
        match self.peek() {
            None | Some('\n') | Some('#') => {
                self.skip_line();
                Ok(())
            }
            Some(c) => Err(format!(
                "unexpected {c:?} after the closing quote (line {})",
                self.line
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OUTER" => Some("outer".to_string()),
            "EMPTYV" => Some(String::new()),
            _ => None,
        }
    }

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text, &env).unwrap().into_iter().collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dotenv_format() {
        // The expected values are python-dotenv's (Debian's Compose v1) on this text.
        let text = "\u{feff}# comment\n\nA=1\nexport B = two words  # trailing\nC='lit ${A} \\n'\nD=\"x\\ty\\n${A}\"\nE=\nF=a#b\nG=${A}-${NOPE:-dflt}-${OUTER}-$A\nH=\"multi\nline\"\nJ.K-L=3\nM=${EMPTYV:-d}\n";
        assert_eq!(
            parse(text, &env).unwrap().into_iter().collect::<Vec<_>>(),
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "lit 1 \\n"),
                ("D", "x\ty\n1"),
                ("E", ""),
                ("F", "a#b"),
                ("G", "1-dflt-outer-$A"),
                ("H", "multi\nline"),
                ("J.K-L", "3"),
                ("M", ""),
            ])
        );
        assert_eq!(ok("A=1\r\nB=2\r\n"), pairs(&[("A", "1"), ("B", "2")]));
        assert_eq!(ok("A=1\nA=2\n"), pairs(&[("A", "2")]));
        assert_eq!(ok(""), pairs(&[]));
    }

    #[test]
    fn bad_lines_are_located() {
        let table: &[(&str, usize, usize, &str)] = &[
            ("A=1\nB\n", 2, 1, "expected `=` after B"),
            ("A=1\n  =x\n", 2, 3, "expected KEY=VALUE"),
            ("1A=x\n", 1, 1, "expected KEY=VALUE"),
            ("A='x\n", 1, 1, "no closing"),
            ("\nA=\"x\n", 2, 1, "no closing"),
            ("A='x' y\n", 1, 1, "after the closing quote"),
            ("A B=1\n", 1, 1, "expected `=` after A"),
        ];
        for (text, line, column, why) in table {
            let (l, c, message) = parse(text, &env).unwrap_err();
            assert_eq!((l, c), (*line, *column), "input {text:?}: {message}");
            assert!(message.contains(why), "input {text:?}: {message}");
        }
    }

    #[test]
    fn unreadable_file_names_it() {
        let err = read(Path::new("/nonexistent/stack.env"), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read /nonexistent/stack.env: No such file or directory"
        );
    }
}
