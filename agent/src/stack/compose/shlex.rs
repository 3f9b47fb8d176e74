//! Splits a `command:`/`entrypoint:` string into words the way Compose does:
//! Python's `shlex.split` (POSIX mode, no comments).
//!
//! Rules (those of `shlex`, not of a full shell): whitespace separates words;
//! `'...'` is literal; inside `"..."` a backslash escapes only `"` and `\`;
//! outside quotes a backslash escapes any character; quotes can join parts
//! of one word (`a"b c"d` is one word) and `''` is an empty word. No
//! variables, globbing or operators: `$`, `*`, `|`, `;` are ordinary
//! characters.

pub(crate) fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once any part of it was seen, even an empty quoted one.
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation (')".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("no closing quotation (\")".to_string()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation (\")".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("nothing after the final backslash".to_string()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<String> {
        split(text).unwrap()
    }

    #[test]
    fn splits_like_python_shlex() {
        // Expected values checked with python3 -c 'import shlex; print(shlex.split(...))'.
        assert_eq!(ok("httpd -D FOREGROUND"), ["httpd", "-D", "FOREGROUND"]);
        assert_eq!(ok("  a \t b\n"), ["a", "b"]);
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("sh -c 'echo $HOME; ls'"), ["sh", "-c", "echo $HOME; ls"]);
        assert_eq!(
            ok(r#"echo "a \"b\" \$c \\ \n""#),
            ["echo", r#"a "b" \$c \ \n"#]
        );
        assert_eq!(ok(r"a\ b c\'d"), ["a b", "c'd"]);
        assert_eq!(ok(r#"a"b c"d"#), ["ab cd"]);
        assert_eq!(ok("'' x \"\""), ["", "x", ""]);
        assert_eq!(ok("'a\\b'"), ["a\\b"]);
        assert_eq!(ok("é 日本"), ["é", "日本"]);
        assert_eq!(ok("a#b # c"), ["a#b", "#", "c"]);
    }

    #[test]
    fn unbalanced_quotes_and_trailing_backslash_are_errors() {
        assert!(split("echo 'a").is_err());
        assert!(split("echo \"a").is_err());
        assert!(split("echo \"a\\").is_err());
        assert!(split("echo a\\").is_err());
    }
}
