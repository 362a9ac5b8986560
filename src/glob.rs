//! Redis-style glob patterns (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes), as
//! KEYS, SCAN MATCH and PSUBSCRIBE use them; here for cache policies and
//! admin invalidation.

/// True when `text` matches `pattern`, with Redis' semantics.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear-ish and
    // no recursion, whatever the pattern.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    let (matched, next) = class(pattern, p + 1, text[t]);
                    if matched {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == text[t] => {
                    p += 2;
                    t += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against a `[...]` class starting after the `[` at `start`;
/// returns whether it matched and where the pattern continues. An
/// unterminated class matches up to the end, as in Redis.
fn class(pattern: &[u8], start: usize, c: u8) -> (bool, usize) {
    let mut i = start;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
            let (lo, hi) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    (matched != negate, (i + 1).min(pattern.len()))
}

/// The literal prefix of a pattern: the bytes before its first
/// metacharacter (for `secrets:*`, `secrets:`).
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern.iter().position(|c| matches!(c, b'*' | b'?' | b'[' | b'\\')).unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_semantics() {
        let yes = [
            ("*", ""),
            ("*", "abc"),
            ("secrets:*", "secrets:org1:aws"),
            ("a?c", "abc"),
            ("h[ae]llo", "hello"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("a\\*b", "a*b"),
            ("*:*:x", "a:b:x"),
            ("a*b*c", "aXXbYYc"),
        ];
        for (p, t) in yes {
            assert!(matches(p.as_bytes(), t.as_bytes()), "{p} should match {t}");
        }
        let no = [("secrets:*", "flow:1"), ("a?c", "ac"), ("h[^e]llo", "hello"), ("a\\*b", "aXb"), ("a*b*c", "aXXbYY")];
        for (p, t) in no {
            assert!(!matches(p.as_bytes(), t.as_bytes()), "{p} should not match {t}");
        }
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(10_000);
        let pattern = "*a".repeat(50) + "b";
        assert!(!matches(pattern.as_bytes(), text.as_bytes()));
    }

    #[test]
    fn prefixes() {
        assert_eq!(literal_prefix(b"secrets:*"), b"secrets:");
        assert_eq!(literal_prefix(b"*"), b"");
        assert_eq!(literal_prefix(b"user:[0-9]*"), b"user:");
    }
}
