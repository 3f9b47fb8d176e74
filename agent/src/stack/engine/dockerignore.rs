//! `.dockerignore` patterns, matched the way the Docker CLI does (moby's
//! `patternmatcher`): lines are trimmed, `#` lines and blank lines skipped,
//! each pattern is cleaned like a path and loses a leading `/`; `*` and `?`
//! never match `/`, `**` matches any number of directories (also none),
//! `[...]` is a character class, `\` escapes. A pattern that matches a parent
//! directory matches everything below it. Patterns apply in order and the last
//! one that matches decides; `!pattern` re-includes what earlier ones excluded.

/// The patterns of one `.dockerignore` file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    exclusion: bool,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    Any,
    /// `**` followed by more pattern: nothing, or anything ending in `/`.
    DirStar,
    /// `**` at the end: anything.
    Rest,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Ignore {
    /// Parses the text of a `.dockerignore` file. Malformed patterns (an
    /// unterminated `[`) are errors naming the line.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, raw) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if raw.is_empty() {
                continue;
            }
            let cleaned = clean(raw);
            let tokens = tokenize(&cleaned).map_err(|e| format!("line {}: {e}", n + 1))?;
            patterns.push(Pattern { exclusion, tokens });
        }
        Ok(Ignore { patterns })
    }

    /// Whether `path` (relative to the context, `/`-separated, no leading
    /// `./`) is excluded from the build context.
    pub(crate) fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an already excluded path, nor an
            // exclusion a path that is not excluded.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = matches(&p.tokens, &path.chars().collect::<Vec<_>>());
            if !hit && parents.len() > 1 {
                for i in 1..parents.len() {
                    let parent = parents[..i].join("/");
                    if matches(&p.tokens, &parent.chars().collect::<Vec<_>>()) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some `!` pattern may re-include a path below an excluded directory.
    pub(crate) fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

/// Go's `filepath.Clean` on a `/`-separated pattern, then without a leading `/`.
fn clean(raw: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !raw.starts_with('/') {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    if out.is_empty() {
        ".".to_string()
    } else {
        out.join("/")
    }
}

fn tokenize(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Rest
                } else {
                    Token::DirStar
                });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '\\' => {
                i += 1;
                let c = *chars
                    .get(i)
                    .ok_or_else(|| format!("pattern {pattern:?} ends with a lone `\\`"))?;
                tokens.push(Token::Char(c));
            }
            '[' => {
                let start = i;
                i += 1;
                let negated = matches!(chars.get(i), Some('^') | Some('!'));
                if negated {
                    i += 1;
                }
                let mut items = Vec::new();
                let mut first = true;
                loop {
                    let c = *chars.get(i).ok_or_else(|| {
                        format!("pattern {pattern:?}: `[` at {start} is not closed")
                    })?;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        i += 1;
                        *chars.get(i).ok_or_else(|| {
                            format!("pattern {pattern:?}: `[` at {start} is not closed")
                        })?
                    } else {
                        c
                    };
                    if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|c| *c != ']')
                    {
                        let hi = chars[i + 2];
                        items.push((lo, hi));
                        i += 3;
                    } else {
                        items.push((lo, lo));
                        i += 1;
                    }
                }
                tokens.push(Token::Class { negated, items });
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

/// Backtracking match of the whole of `s` (at most one level of choice per
/// star, so it stays polynomial on the short paths of a build context).
fn matches(tokens: &[Token], s: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match first {
        Token::Char(c) => s.first() == Some(c) && matches(rest, &s[1..]),
        Token::Any => s.first().is_some_and(|c| *c != '/') && matches(rest, &s[1..]),
        Token::Class { negated, items } => {
            let Some(c) = s.first() else { return false };
            let inside = items.iter().any(|(lo, hi)| lo <= c && c <= hi);
            *c != '/' && inside != *negated && matches(rest, &s[1..])
        }
        Token::Star => {
            for i in 0..=s.len() {
                if matches(rest, &s[i..]) {
                    return true;
                }
                if s.get(i) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::Rest => true,
        Token::DirStar => {
            if matches(rest, s) {
                return true;
            }
            (0..s.len()).any(|i| s[i] == '/' && matches(rest, &s[i + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn plain_names_and_their_subtrees() {
        let i = ig("node_modules\n# comment\n\n  .git  \n");
        assert!(i.excludes("node_modules"));
        assert!(i.excludes("node_modules/a/b.js"));
        assert!(i.excludes(".git/HEAD"));
        assert!(!i.excludes("src/node_modules"));
        assert!(!i.excludes("node_modules2"));
    }

    #[test]
    fn star_does_not_cross_directories() {
        let i = ig("*.log\n*/temp*\n");
        assert!(i.excludes("a.log"));
        assert!(!i.excludes("dir/a.log"));
        assert!(i.excludes("somedir/temporary.txt"));
        assert!(i.excludes("somedir/temp"));
        assert!(!i.excludes("a/b/temp"));
    }

    #[test]
    fn double_star_matches_any_depth_including_none() {
        let i = ig("**/*.go\n");
        assert!(i.excludes("main.go"));
        assert!(i.excludes("a/b/c/main.go"));
        assert!(!i.excludes("main.rs"));
        let i = ig("docs/**\n");
        assert!(i.excludes("docs/a/b"));
        let i = ig("a/**/z\n");
        assert!(i.excludes("a/z"));
        assert!(i.excludes("a/b/c/z"));
        assert!(!i.excludes("a/b/c/y"));
    }

    #[test]
    fn exceptions_reinclude_and_last_match_wins() {
        let i = ig("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(i.excludes("CHANGES.md"));
        assert!(!i.excludes("README.md"));
        assert!(i.excludes("README-secret.md"));
        let i = ig("data\n!data/keep.txt\n");
        assert!(i.excludes("data/x"));
        assert!(!i.excludes("data/keep.txt"));
    }

    #[test]
    fn leading_slash_dot_segments_question_and_classes() {
        let i = ig("/build/./out/../bin\nfile?.txt\n[a-c]x\n[!a]y\n");
        assert!(i.excludes("build/bin/tool"));
        assert!(i.excludes("file1.txt"));
        assert!(!i.excludes("file10.txt"));
        assert!(i.excludes("bx"));
        assert!(!i.excludes("dx"));
        assert!(i.excludes("by"));
        assert!(!i.excludes("ay"));
    }

    #[test]
    fn escapes_and_errors() {
        let i = ig("\\*literal\n");
        assert!(i.excludes("*literal"));
        assert!(!i.excludes("xliteral"));
        let e = Ignore::parse("ok\n[abc\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(ig("# only comments\n").is_empty());
    }
}
