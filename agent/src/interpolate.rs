//! `${VAR}` interpolation with Docker Compose's rules, as a pure function of the
//! input and a lookup, so that `rehost.yaml` and the compose parser share it.
//!
//! Supported forms: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty),
//! `${VAR-default}` (unset), `${VAR:?message}` / `${VAR?message}` (error),
//! `${VAR:+alt}` / `${VAR+alt}` (replacement when set), and `$$` for a literal
//! `$`. Names are `[A-Za-z_][A-Za-z0-9_]*`. The words after `:-`, `-`, `:?`,
//! `?`, `:+` and `+` are themselves interpolated, so `${A:-${B}}` works.
//!
//! Invariants:
//! - The whole input is parsed before any variable is looked up, so a malformed
//!   template is an error even inside a branch that would not be taken.
//! - Words are evaluated lazily: the default of a set variable is never looked
//!   at, so `${A:-${B}}` with `A` set does not need `B` (matters in strict mode).
//! - Like Compose, a `$` not followed by a name, `{` or `$` is an error (Compose:
//!   "invalid interpolation format"), never silently kept.
//! - Every error carries the byte offset in the input of the `$` that starts
//!   the offending expression.

/// How unset variables in a plain `$VAR` / `${VAR}` are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interpolation {
    /// `false` (Compose): an unset variable becomes the empty string.
    /// `true` (rehost.yaml): it is an error, because a silently empty path or
    /// bucket name does far more harm there than a refusal to start.
    pub unset_is_error: bool,
}

/// Why a template could not be interpolated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// A plain `${VAR}` named an unset variable in strict mode.
    #[error("environment variable {name} is not set (write ${{{name}:-default}} or ${{{name}-}} if it may be unset)")]
    Unset { name: String, offset: usize },
    /// `${VAR:?message}` or `${VAR?message}` with the variable missing.
    #[error("required variable {name} is missing a value{}", colon_message(.message))]
    Required {
        name: String,
        message: String,
        offset: usize,
    },
    /// Not a valid template.
    #[error(
        "invalid interpolation format at byte {offset}: {reason} (write `$$` for a literal `$`)"
    )]
    Invalid { reason: &'static str, offset: usize },
}

impl InterpolateError {
    /// Byte offset, in the interpolated input, of the `$` that caused the error.
    pub fn offset(&self) -> usize {
        match self {
            InterpolateError::Unset { offset, .. }
            | InterpolateError::Required { offset, .. }
            | InterpolateError::Invalid { offset, .. } => *offset,
        }
    }
}

fn colon_message(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl Interpolation {
    /// Compose's behaviour: unset variables become empty strings.
    pub const COMPOSE: Interpolation = Interpolation {
        unset_is_error: false,
    };
    /// rehost.yaml's behaviour: an unset plain `${VAR}` is an error.
    pub const STRICT: Interpolation = Interpolation {
        unset_is_error: true,
    };

    /// Interpolates `input`, reading variables through `lookup`
    /// (`None` = unset, `Some("")` = set but empty).
    pub fn apply(
        &self,
        input: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, InterpolateError> {
        // Fast path: most strings in a config have no `$` at all.
        if !input.contains('$') {
            return Ok(input.to_string());
        }
        let (nodes, _) = parse(input, 0, None)?;
        let mut out = String::with_capacity(input.len());
        self.eval(&nodes, lookup, &mut out)?;
        Ok(out)
    }

    fn eval(
        &self,
        nodes: &[Node<'_>],
        lookup: &dyn Fn(&str) -> Option<String>,
        out: &mut String,
    ) -> Result<(), InterpolateError> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Var {
                    name,
                    op,
                    word,
                    offset,
                } => {
                    let value = lookup(name);
                    // `colon` forms treat a set-but-empty variable like an unset one.
                    let missing = |colon: bool| match &value {
                        None => true,
                        Some(v) => colon && v.is_empty(),
                    };
                    match *op {
                        Op::Plain => match &value {
                            Some(v) => out.push_str(v),
                            None if self.unset_is_error => {
                                return Err(InterpolateError::Unset {
                                    name: (*name).to_string(),
                                    offset: *offset,
                                })
                            }
                            None => {}
                        },
                        Op::Default { colon } => match &value {
                            Some(v) if !missing(colon) => out.push_str(v),
                            _ => self.eval(word, lookup, out)?,
                        },
                        Op::Required { colon } => match &value {
                            Some(v) if !missing(colon) => out.push_str(v),
                            _ => {
                                let mut message = String::new();
                                self.eval(word, lookup, &mut message)?;
                                return Err(InterpolateError::Required {
                                    name: (*name).to_string(),
                                    message,
                                    offset: *offset,
                                });
                            }
                        },
                        Op::Alt { colon } => {
                            if !missing(colon) {
                                self.eval(word, lookup, out)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Interpolates with Compose's rules (unset variables become empty strings).
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    Interpolation::COMPOSE.apply(input, lookup)
}

#[derive(Debug)]
enum Node<'a> {
    Text(&'a str),
    Var {
        name: &'a str,
        op: Op,
        /// The default, message or alternative (empty for [`Op::Plain`]).
        word: Vec<Node<'a>>,
        /// Byte offset of the `$`.
        offset: usize,
    },
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Plain,
    Default { colon: bool },
    Required { colon: bool },
    Alt { colon: bool },
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn name_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while bytes.get(end).copied().is_some_and(is_name_char) {
        end += 1;
    }
    end
}

/// Parses from `start` to the end of `input`, or, inside a `${...}` word
/// (`open` = offset of its `$`), up to the `}` that closes it. Returns the
/// nodes and the offset where parsing stopped (the closing `}`, or the end).
///
/// Only `${` opens a nesting level, as in Compose and the shell, so a lone `{`
/// in a default is literal and the first unmatched `}` ends the word.
fn parse(
    input: &str,
    start: usize,
    open: Option<usize>,
) -> Result<(Vec<Node<'_>>, usize), InterpolateError> {
    let bytes = input.as_bytes();
    let mut nodes = Vec::new();
    let mut literal_start = start;
    let mut i = start;
    // All delimiters are ASCII, so every index we slice at is a char boundary.
    while i < bytes.len() {
        match bytes[i] {
            b'}' if open.is_some() => {
                push_text(&mut nodes, &input[literal_start..i]);
                return Ok((nodes, i));
            }
            b'$' => {
                push_text(&mut nodes, &input[literal_start..i]);
                let dollar = i;
                let invalid = |reason| InterpolateError::Invalid {
                    reason,
                    offset: dollar,
                };
                match bytes.get(i + 1).copied() {
                    Some(b'$') => {
                        nodes.push(Node::Text("$"));
                        i += 2;
                    }
                    Some(b) if is_name_start(b) => {
                        let end = name_end(bytes, i + 1);
                        nodes.push(Node::Var {
                            name: &input[i + 1..end],
                            op: Op::Plain,
                            word: Vec::new(),
                            offset: dollar,
                        });
                        i = end;
                    }
                    Some(b'{') => {
                        let name_start = i + 2;
                        if !bytes.get(name_start).copied().is_some_and(is_name_start) {
                            return Err(invalid("expected a variable name after `${`"));
                        }
                        let end = name_end(bytes, name_start);
                        let name = &input[name_start..end];
                        let (op, word_start) = match bytes.get(end).copied() {
                            Some(b'}') => (Op::Plain, None),
                            Some(b':') => {
                                let op = match bytes.get(end + 1).copied() {
                                    Some(b'-') => Op::Default { colon: true },
                                    Some(b'?') => Op::Required { colon: true },
                                    Some(b'+') => Op::Alt { colon: true },
                                    _ => {
                                        return Err(invalid(
                                            "expected `-`, `?` or `+` after `:` in `${...}`",
                                        ))
                                    }
                                };
                                (op, Some(end + 2))
                            }
                            Some(b'-') => (Op::Default { colon: false }, Some(end + 1)),
                            Some(b'?') => (Op::Required { colon: false }, Some(end + 1)),
                            Some(b'+') => (Op::Alt { colon: false }, Some(end + 1)),
                            None => return Err(invalid("unclosed `${`")),
                            Some(_) => {
                                return Err(invalid(
                                    "expected `}`, `:-`, `-`, `:?`, `?`, `:+` or `+` after the variable name",
                                ))
                            }
                        };
                        let (word, close) = match word_start {
                            None => (Vec::new(), end),
                            Some(ws) => parse(input, ws, Some(dollar))?,
                        };
                        nodes.push(Node::Var {
                            name,
                            op,
                            word,
                            offset: dollar,
                        });
                        i = close + 1;
                    }
                    _ => {
                        return Err(invalid(
                            "`$` must be followed by a variable name, `{` or another `$`",
                        ))
                    }
                }
                literal_start = i;
            }
            _ => i += 1,
        }
    }
    if let Some(dollar) = open {
        return Err(InterpolateError::Invalid {
            reason: "unclosed `${`",
            offset: dollar,
        });
    }
    push_text(&mut nodes, &input[literal_start..]);
    Ok((nodes, bytes.len()))
}

fn push_text<'a>(nodes: &mut Vec<Node<'a>>, text: &'a str) {
    if !text.is_empty() {
        nodes.push(Node::Text(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interpolate_strict(
        input: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, InterpolateError> {
        Interpolation::STRICT.apply(input, lookup)
    }

    /// SET=value, EMPTY="", OTHER=other; everything else unset.
    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            "OTHER" => Some("other".to_string()),
            "lower_case9" => Some("lc".to_string()),
            _ => None,
        }
    }

    #[test]
    fn every_form_interpolates_like_compose() {
        let table: &[(&str, &str)] = &[
            ("plain text", "plain text"),
            ("", ""),
            ("$SET", "value"),
            ("${SET}", "value"),
            ("a${SET}b", "avalueb"),
            ("$SET/x", "value/x"),
            ("$SET.x", "value.x"),
            ("${lower_case9}", "lc"),
            ("$lower_case9-x", "lc-x"),
            // Unset and empty in the non-strict (Compose) mode.
            ("[$UNSET]", "[]"),
            ("[${UNSET}]", "[]"),
            ("[${EMPTY}]", "[]"),
            // :- unset or empty
            ("${SET:-d}", "value"),
            ("${EMPTY:-d}", "d"),
            ("${UNSET:-d}", "d"),
            // - unset only
            ("${SET-d}", "value"),
            ("[${EMPTY-d}]", "[]"),
            ("${UNSET-d}", "d"),
            ("[${UNSET-}]", "[]"),
            ("${UNSET:-}", ""),
            // :+ set and non-empty / + set
            ("${SET:+alt}", "alt"),
            ("[${EMPTY:+alt}]", "[]"),
            ("[${UNSET:+alt}]", "[]"),
            ("${SET+alt}", "alt"),
            ("${EMPTY+alt}", "alt"),
            ("[${UNSET+alt}]", "[]"),
            // ? forms when the variable is there
            ("${SET:?msg}", "value"),
            ("${SET?msg}", "value"),
            ("[${EMPTY?msg}]", "[]"),
            // $$
            ("$$", "$"),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("a$$$SET", "a$value"),
            ("${UNSET:-$$}", "$"),
            // nesting
            ("${UNSET:-${SET}}", "value"),
            ("${UNSET:-${UNSET2:-${OTHER}}}", "other"),
            ("${UNSET:-x${SET}y}z", "xvalueyz"),
            ("${SET:+<${OTHER}>}", "<other>"),
            ("${UNSET:-$SET}", "value"),
            // a lone `{` in a word is literal; the first `}` closes the word
            ("${UNSET:-{a}b}", "{ab}"),
            ("${UNSET:-a:b-c?d+e}", "a:b-c?d+e"),
            // `}` and `{` outside an expression are literal
            ("{}", "{}"),
            ("a}b", "a}b"),
            // non-ASCII around expressions
            ("é${SET}ü", "évalueü"),
            ("${UNSET:-日本}", "日本"),
        ];
        for (input, want) in table {
            assert_eq!(
                interpolate(input, &env).as_deref(),
                Ok(*want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn strict_mode_refuses_unset_plain_variables_only() {
        assert_eq!(
            interpolate_strict("x${FOO}", &env),
            Err(InterpolateError::Unset {
                name: "FOO".to_string(),
                offset: 1
            })
        );
        assert_eq!(
            interpolate_strict("ab$FOO", &env),
            Err(InterpolateError::Unset {
                name: "FOO".to_string(),
                offset: 2
            })
        );
        // Explicit fallbacks and empty values are fine.
        assert_eq!(interpolate_strict("${FOO:-d}", &env).as_deref(), Ok("d"));
        assert_eq!(interpolate_strict("${FOO-}", &env).as_deref(), Ok(""));
        assert_eq!(interpolate_strict("${FOO:+a}", &env).as_deref(), Ok(""));
        assert_eq!(interpolate_strict("${EMPTY}", &env).as_deref(), Ok(""));
        // Defaults are lazy: B is never needed because A is set.
        assert_eq!(
            interpolate_strict("${SET:-${B}}", &env).as_deref(),
            Ok("value")
        );
        // ...but needed when A is unset, and the error points at the inner `$`.
        assert_eq!(
            interpolate_strict("${A:-${B}}", &env),
            Err(InterpolateError::Unset {
                name: "B".to_string(),
                offset: 5
            })
        );
        let message = interpolate_strict("${FOO}", &env).unwrap_err().to_string();
        assert!(
            message.starts_with("environment variable FOO is not set"),
            "{message}"
        );
        assert!(message.contains("${FOO:-default}"), "{message}");
    }

    #[test]
    fn required_forms_fail_with_the_message() {
        let err = interpolate("ab${UNSET:?set it in /etc/default/rehost}", &env).unwrap_err();
        assert_eq!(
            err,
            InterpolateError::Required {
                name: "UNSET".to_string(),
                message: "set it in /etc/default/rehost".to_string(),
                offset: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "required variable UNSET is missing a value: set it in /etc/default/rehost"
        );
        // `:?` refuses empty, `?` accepts it.
        assert!(interpolate("${EMPTY:?no}", &env).is_err());
        assert!(interpolate("${EMPTY?no}", &env).is_ok());
        assert!(interpolate("${UNSET?no}", &env).is_err());
        // The message is interpolated too; an empty message is not printed.
        assert_eq!(
            interpolate("${UNSET:?need $SET}", &env)
                .unwrap_err()
                .to_string(),
            "required variable UNSET is missing a value: need value"
        );
        assert_eq!(
            interpolate("${UNSET?}", &env).unwrap_err().to_string(),
            "required variable UNSET is missing a value"
        );
    }

    #[test]
    fn malformed_templates_are_errors_with_offsets() {
        let table: &[(&str, usize)] = &[
            ("$", 0),
            ("cost: 5$", 7),
            ("$ {X}", 0),
            ("$1", 0),
            ("a$-", 1),
            ("${", 0),
            ("${}", 0),
            ("${ X}", 0),
            ("${1X}", 0),
            ("x${X", 1),
            ("${X:}", 0),
            ("${X:=d}", 0),
            ("${X.Y}", 0),
            ("${X:-d", 0),
            ("${X:-${Y}", 0),
            ("${X:-${Y:-", 5),
            ("${X:-a$b c$}", 10),
            // Even in a branch that is not taken: the whole input is checked.
            ("${SET:-$}", 7),
        ];
        for (input, offset) in table {
            match interpolate(input, &env) {
                Err(err @ InterpolateError::Invalid { .. }) => {
                    assert_eq!(err.offset(), *offset, "input {input:?}: {err}");
                    assert!(err.to_string().contains("`$$`"), "{err}");
                }
                other => panic!("input {input:?}: expected Invalid, got {other:?}"),
            }
        }
    }
}
