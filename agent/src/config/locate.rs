//! Maps a key path (`["state", "acme", "mode"]`) back to the line and column of
//! that key in the YAML text, because serde_yaml's `Value` forgets positions.
//!
//! Invariants:
//! - Best effort, never wrong on purpose: a position is returned only for a key
//!   actually found at the expected nesting; otherwise `None` (the caller still
//!   prints the key path).
//! - Understands what `rehost.yaml` and compose files use: block mappings
//!   (nesting by indentation), block sequences (`- item`, also at the parent
//!   key's indentation, and mappings inside items), comments, blank lines,
//!   `---`, plain and quoted keys, and one-line flow collections such as
//!   `keep: { last: 10, daily: 14 }` or `command: ["a", "b"]`. Multi-line flow
//!   collections are not followed.
//! - Lines and columns are 1-based; columns count characters, like libyaml's.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// One step of a path: a mapping key, or an index into a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Locates a path of mapping keys (what `rehost.yaml` mostly has). When the
/// keys are not all found, segments that are numbers are taken as sequence
/// indices instead (`notify.0.url`): a state named `0` is still found first.
pub(crate) fn locate(text: &str, path: &[String]) -> Option<Position> {
    let keys: Vec<Segment<'_>> = path.iter().map(|s| Segment::Key(s)).collect();
    locate_segments(text, &keys).or_else(|| {
        let indexed: Vec<Segment<'_>> = path
            .iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) if s.bytes().all(|b| b.is_ascii_digit()) => Segment::Index(i),
                _ => Segment::Key(s),
            })
            .collect();
        if indexed == keys {
            return None;
        }
        locate_segments(text, &indexed)
    })
}

/// Locates a path of keys and sequence indices: the key's position for a
/// key, the item's content (after `- `) for an index.
pub(crate) fn locate_segments(text: &str, path: &[Segment<'_>]) -> Option<Position> {
    // Owned, because entering a block sequence item blanks its `-` so that a
    // mapping inside the item reads like any other block mapping.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut start = 0;
    let mut end = lines.len();
    let mut parent_indent: Option<usize> = None;
    // Where the value of the last found key starts, when it is on the key's
    // own line (flow collections).
    let mut inline: Option<(usize, usize)> = None;
    let mut found = None;

    for (depth, segment) in path.iter().enumerate() {
        let hit = match *segment {
            Segment::Key(key) => find_block_key(&lines, start, end, parent_indent, key),
            Segment::Index(index) => find_block_item(&mut lines, start, end, parent_indent, index),
        };
        match hit {
            Some(hit) => {
                found = Some(Position {
                    line: hit.line + 1,
                    column: lines[hit.line][..hit.column].chars().count() + 1,
                });
                // An item's own line holds its first key, if it is a mapping.
                start = match segment {
                    Segment::Key(_) => hit.line + 1,
                    Segment::Index(_) => hit.line,
                };
                let is_key = matches!(segment, Segment::Key(_));
                end = block_end(&lines, hit.line + 1, end, hit.indent, is_key);
                parent_indent = Some(hit.indent);
                inline = Some((hit.line, hit.value_offset));
            }
            None => {
                let (line, offset) = inline?;
                return locate_flow(&lines[line], offset, &path[depth..]).map(|column| Position {
                    line: line + 1,
                    column,
                });
            }
        }
    }
    found
}

struct Hit {
    line: usize,
    /// Indentation of the key, or of an item's `-`: what the lines of its
    /// value are deeper than.
    indent: usize,
    /// Byte offset of what the position points at: the key, or the item's
    /// content.
    column: usize,
    /// Byte offset just after the key's `:` (or the item's `-`).
    value_offset: usize,
}

/// Finds `segment` among the keys directly inside lines `start..end`: those
/// at the indentation of the first content line, which must be deeper than
/// the parent's.
fn find_block_key(
    lines: &[String],
    start: usize,
    end: usize,
    parent_indent: Option<usize>,
    segment: &str,
) -> Option<Hit> {
    let mut child_indent = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        let Some(indent) = content_indent(line) else {
            continue;
        };
        if parent_indent.is_some_and(|p| indent <= p) {
            return None;
        }
        let level = *child_indent.get_or_insert(indent);
        if indent != level {
            continue;
        }
        if let Some((key, value_offset)) = block_key(&line[indent..]) {
            if key == segment {
                return Some(Hit {
                    line: i,
                    indent,
                    column: indent,
                    value_offset: indent + value_offset,
                });
            }
        }
    }
    None
}

/// Finds item `index` of the block sequence in lines `start..end` (which may
/// sit at the parent key's own indentation, as YAML allows), and blanks its
/// `-` so that a mapping inside it can be searched like any other.
fn find_block_item(
    lines: &mut [String],
    start: usize,
    end: usize,
    parent_indent: Option<usize>,
    index: usize,
) -> Option<Hit> {
    let mut dash_indent = None;
    let mut seen = 0;
    for i in start..end.min(lines.len()) {
        let Some(indent) = content_indent(&lines[i]) else {
            continue;
        };
        if parent_indent.is_some_and(|p| indent < p) {
            return None;
        }
        let level = *dash_indent.get_or_insert(indent);
        if indent < level {
            return None;
        }
        if indent > level {
            continue;
        }
        if !is_dash(&lines[i][indent..]) {
            return None;
        }
        if seen == index {
            let line = &mut lines[i];
            line.replace_range(indent..indent + 1, " ");
            let after = &line[indent + 1..];
            let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
            let rest = after[spaces..].trim_end();
            let column = if rest.is_empty() || rest.starts_with('#') {
                indent
            } else {
                indent + 1 + spaces
            };
            return Some(Hit {
                line: i,
                indent,
                column,
                value_offset: indent + 1,
            });
        }
        seen += 1;
    }
    None
}

/// `- item` or a lone `-`.
fn is_dash(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ") || rest.starts_with("-\t")
}

/// The first line at or after `start` (before `end`) that leaves the block
/// of a key indented by `indent`: a line as shallow, except a `-` item at
/// exactly that indentation when the key's value may be such a sequence.
fn block_end(
    lines: &[String],
    start: usize,
    end: usize,
    indent: usize,
    items_at_indent: bool,
) -> usize {
    (start..end.min(lines.len()))
        .find(|&i| {
            content_indent(&lines[i]).is_some_and(|n| {
                n < indent || (n == indent && !(items_at_indent && is_dash(&lines[i][n..])))
            })
        })
        .unwrap_or(end)
}

/// Indentation of a line that carries YAML content; `None` for blank lines,
/// comments, document markers and directives.
fn content_indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start_matches(' ');
    let indent = line.len() - trimmed.len();
    let content = trimmed.trim_end();
    let skip = content.is_empty()
        || content.starts_with('#')
        || (indent == 0
            && (content == "---"
                || content == "..."
                || content.starts_with("--- ")
                || content.starts_with('%')));
    (!skip).then_some(indent)
}

/// The key at the start of `rest` (a line without its indentation) and the
/// byte offset just after its `:`, if the line is `key: ...`.
fn block_key(rest: &str) -> Option<(String, usize)> {
    let (key, after) = match rest.chars().next()? {
        '"' | '\'' => quoted(rest)?,
        '-' if rest.len() == 1 || rest[1..].starts_with([' ', '\t']) => return None,
        '?' | '{' | '[' | '#' | '&' | '*' | '!' | '|' | '>' => return None,
        _ => {
            let colon = plain_key_end(rest)?;
            (rest[..colon].trim_end().to_string(), colon)
        }
    };
    let tail = &rest[after..];
    let spaces = tail.len() - tail.trim_start_matches([' ', '\t']).len();
    let tail = &tail[spaces..];
    let after_colon = tail.strip_prefix(':')?;
    if !(after_colon.is_empty() || after_colon.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, after + spaces + 1))
}

/// Byte offset of the `:` ending a plain key: the first `:` followed by a
/// space or the end of the line, unless a ` #` comment comes first.
fn plain_key_end(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b':' if matches!(bytes.get(i + 1), None | Some(b' ') | Some(b'\t')) => return Some(i),
            b'#' if i > 0 && matches!(bytes[i - 1], b' ' | b'\t') => return None,
            _ => {}
        }
    }
    None
}

/// A quoted scalar at the start of `s`: its value and the byte offset after
/// the closing quote.
fn quoted(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    let (_, quote) = chars.next()?;
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            ('"', '\\') => {
                let (_, escaped) = chars.next()?;
                out.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    '0' => '\0',
                    other => other,
                });
            }
            ('\'', '\'') if s[i + 1..].starts_with('\'') => {
                chars.next();
                out.push('\'');
            }
            (q, c) if c == q => return Some((out, i + c.len_utf8())),
            (_, c) => out.push(c),
        }
    }
    None
}

/// Follows `path` through one-line flow collections starting at byte
/// `offset` of `line`; returns the 1-based column of the last key or item.
fn locate_flow(line: &str, offset: usize, path: &[Segment<'_>]) -> Option<usize> {
    let (segment, rest_path) = path.split_first()?;
    let bytes = line.as_bytes();
    let mut i = skip_spaces(bytes, offset);
    let column = |at: usize| line[..at].chars().count() + 1;
    match (bytes.get(i), segment) {
        (Some(b'{'), Segment::Key(segment)) => {
            i += 1;
            loop {
                i = skip_spaces(bytes, i);
                match bytes.get(i)? {
                    b'}' | b']' => return None,
                    b',' => {
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
                let key_start = i;
                let (key, after) = match bytes[i] {
                    b'"' | b'\'' => {
                        let (key, len) = quoted(&line[i..])?;
                        (key, i + len)
                    }
                    _ => {
                        let len = line[i..].find([':', ',', '}'])?;
                        (line[i..i + len].trim_end().to_string(), i + len)
                    }
                };
                i = skip_spaces(bytes, after);
                if bytes.get(i) == Some(&b':') {
                    i += 1;
                    if key == *segment {
                        if rest_path.is_empty() {
                            return Some(column(key_start));
                        }
                        return locate_flow(line, i, rest_path);
                    }
                }
                i = skip_flow_value(bytes, i)?;
            }
        }
        (Some(b'['), Segment::Index(index)) => {
            i += 1;
            let mut seen = 0;
            loop {
                i = skip_spaces(bytes, i);
                match bytes.get(i)? {
                    b'}' | b']' => return None,
                    _ => {}
                }
                if seen == *index {
                    if rest_path.is_empty() {
                        return Some(column(i));
                    }
                    return locate_flow(line, i, rest_path);
                }
                i = skip_flow_value(bytes, i)?;
                if bytes.get(i) == Some(&b',') {
                    i += 1;
                }
                seen += 1;
            }
        }
        _ => None,
    }
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ') | Some(b'\t')) {
        i += 1;
    }
    i
}

/// Skips a flow value up to (not including) the `,` or `}` that ends it.
fn skip_flow_value(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' | b'\'' => {
                // Quotes are ASCII, so `i` is a char boundary.
                let s = std::str::from_utf8(&bytes[i..]).ok()?;
                let (_, len) = quoted(s)?;
                i += len;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b'}' | b']' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: &str) -> Option<(usize, usize)> {
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        locate(text, &path).map(|p| (p.line, p.column))
    }

    const DOC: &str = "\
# rehost.yaml
---
host: web-1   # comment: with colon
storage:
  url: s3://bucket/x
  # path_style: true
  region: garage

state:
  acme:
    path: /srv/acme/acme.json
    mode: \"0600\"
    keep: { last: 10, \"daily\": 14, nested: {a: 1, b: [1, 2]}, weekly: 2 }
  \"quoted key\":
    path: /x
    description: |
      mode: not a key
      state: nor this
  'it''s':
    mode: 1
  grafana:
    path: /srv/grafana
    mode: 0640
jobs:
  timeout: 30m
";

    #[test]
    fn finds_block_keys_at_their_nesting() {
        assert_eq!(at(DOC, "host"), Some((3, 1)));
        assert_eq!(at(DOC, "storage.url"), Some((5, 3)));
        assert_eq!(at(DOC, "storage.region"), Some((7, 3)));
        assert_eq!(at(DOC, "state.acme.mode"), Some((12, 5)));
        assert_eq!(at(DOC, "state.grafana.mode"), Some((23, 5)));
        assert_eq!(at(DOC, "state.quoted key.path"), Some((15, 5)));
        assert_eq!(at(DOC, "state.it's.mode"), Some((20, 5)));
        assert_eq!(at(DOC, "jobs.timeout"), Some((25, 3)));
    }

    #[test]
    fn finds_keys_in_one_line_flow_mappings() {
        assert_eq!(at(DOC, "state.acme.keep"), Some((13, 5)));
        assert_eq!(at(DOC, "state.acme.keep.last"), Some((13, 13)));
        assert_eq!(at(DOC, "state.acme.keep.daily"), Some((13, 23)));
        assert_eq!(at(DOC, "state.acme.keep.nested.b"), Some((13, 51)));
        assert_eq!(at(DOC, "state.acme.keep.weekly"), Some((13, 63)));
        assert_eq!(at(DOC, "state.acme.keep.monthly"), None);
    }

    #[test]
    fn does_not_match_keys_at_the_wrong_level_or_in_block_scalars() {
        // `path_style` only appears in a comment; `mode` under "quoted key"
        // only inside a block scalar; `region` is not top level.
        assert_eq!(at(DOC, "storage.path_style"), None);
        assert_eq!(at(DOC, "state.quoted key.mode"), None);
        assert_eq!(at(DOC, "region"), None);
        assert_eq!(at(DOC, "state.acme.url"), None);
        assert_eq!(at(DOC, "state.missing"), None);
        // `mode` of grafana, not acme's, and vice versa.
        assert_eq!(at(DOC, "state.acme.path"), Some((11, 5)));
    }

    #[test]
    fn numbers_are_keys_first_then_sequence_indices() {
        let text = "state:\n  \"0\":\n    path: /x\nnotify:\n  - url: a\n  - url: b\n    on: [start, never]\n";
        assert_eq!(at(text, "state.0.path"), Some((3, 5)));
        assert_eq!(at(text, "notify.0.url"), Some((5, 5)));
        assert_eq!(at(text, "notify.1.url"), Some((6, 5)));
        assert_eq!(at(text, "notify.1.on.1"), Some((7, 17)));
        assert_eq!(at(text, "notify.2.url"), None);
        assert_eq!(at(text, "state.1.path"), None);
    }

    #[test]
    fn handles_crlf_and_odd_indentation() {
        let text = "state:\r\n      acme:\r\n         path: /x\r\n";
        assert_eq!(at(text, "state.acme.path"), Some((3, 10)));
        assert_eq!(at("a:\n b: 1\n", "a.b"), Some((2, 2)));
        // A deeper line first fixes the child level; siblings must match it.
        assert_eq!(at("a:\n  b: 1\n    c: 2\n", "a.c"), None);
    }

    fn at_segments(text: &str, path: &[Segment<'_>]) -> Option<(usize, usize)> {
        locate_segments(text, path).map(|p| (p.line, p.column))
    }

    const COMPOSE: &str = "\
services:
  web:
    ports:
      - \"80:80\"
      -   443:443   # comment
    volumes:
    - type: bind
      source: ./a
    -
      type: volume
      source: b
    - - nested
      - list
    command: [\"a\", [x, y], {k: v}, \"d\"]
    image: x
";

    #[test]
    fn finds_sequence_items_and_keys_inside_them() {
        use Segment::{Index as I, Key as K};
        let web = [K("services"), K("web")];
        let path = |rest: &[Segment<'static>]| [&web[..], rest].concat();
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("ports"), I(0)])),
            Some((4, 9))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("ports"), I(1)])),
            Some((5, 11))
        );
        assert_eq!(at_segments(COMPOSE, &path(&[K("ports"), I(2)])), None);
        // Items at the key's own indentation; keys inside items.
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("volumes"), I(0)])),
            Some((7, 7))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("volumes"), I(0), K("source")])),
            Some((8, 7))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("volumes"), I(0), K("type")])),
            Some((7, 7))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("volumes"), I(1)])),
            Some((9, 5))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("volumes"), I(1), K("source")])),
            Some((11, 7))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("volumes"), I(1), K("target")])),
            None
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("volumes"), I(2), I(1)])),
            Some((13, 9))
        );
        // The sequence ended: `command` and `image` are not items.
        assert_eq!(at_segments(COMPOSE, &path(&[K("volumes"), I(3)])), None);
        assert_eq!(at_segments(COMPOSE, &path(&[K("image")])), Some((15, 5)));
        // One-line flow sequences, nested flow collections.
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("command"), I(0)])),
            Some((14, 15))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("command"), I(1), I(1)])),
            Some((14, 24))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("command"), I(2), K("k")])),
            Some((14, 29))
        );
        assert_eq!(
            at_segments(COMPOSE, &path(&[K("command"), I(3)])),
            Some((14, 36))
        );
        assert_eq!(at_segments(COMPOSE, &path(&[K("command"), I(4)])), None);
        assert_eq!(at_segments(COMPOSE, &path(&[K("ports"), K("x")])), None);
    }

    #[test]
    fn block_key_forms() {
        assert_eq!(block_key("a: 1"), Some(("a".to_string(), 2)));
        assert_eq!(block_key("a:"), Some(("a".to_string(), 2)));
        assert_eq!(block_key("a : 1"), Some(("a".to_string(), 3)));
        assert_eq!(block_key("url: s3://x"), Some(("url".to_string(), 4)));
        assert_eq!(block_key("\"a: b\": 1"), Some(("a: b".to_string(), 7)));
        assert_eq!(block_key("'a''b': 1"), Some(("a'b".to_string(), 7)));
        assert_eq!(block_key("- a: 1"), None);
        assert_eq!(block_key("s3://x"), None);
        assert_eq!(block_key("a # b: c"), None);
        assert_eq!(block_key("\"unterminated: 1"), None);
    }
}
