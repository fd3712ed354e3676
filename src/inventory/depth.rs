//! A cheap nesting-depth check run before a YAML or JSON document is
//! parsed: a 100k-deep `[[[[...` is refused in one linear pass instead of
//! reaching the parser, whose cost grows with depth (and whose recursion
//! limit, where it has one, is found only after the whole document was
//! tokenised). Used for inventories and for the config file.

/// Deeper than this is refused: real configs and inventories nest a few
/// levels (a list of objects with a `labels` map is three).
pub(crate) const MAX_DEPTH: usize = 64;

/// `Err(line)` (1-based) of the first line where the nesting estimate
/// exceeds `limit`. The estimate counts flow collections (`[`, `{`),
/// block indentation levels and compact `- - -` entries, outside quotes
/// and comments; it may over-count odd documents slightly, never under a
/// real flow nesting.
pub(crate) fn check_depth(text: &str, limit: usize) -> Result<(), usize> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let block = if flow == 0 {
            block_depth(line, &mut indents)
        } else {
            0
        };
        if block > limit || !scan_flow(line, &mut flow, block, limit) {
            return Err(i + 1);
        }
    }
    Ok(())
}

/// The block nesting of `line` (outside any flow collection): indentation
/// levels seen so far (`indents`, updated) plus compact `- - -` entries.
/// 0 for blank and comment lines.
fn block_depth(line: &str, indents: &mut Vec<usize>) -> usize {
    let body = line.trim_start_matches(' ');
    if body.trim().is_empty() || body.starts_with('#') {
        return 0;
    }
    let indent = line.len() - body.len();
    while indents.last().is_some_and(|t| *t > indent) {
        indents.pop();
    }
    if indents.last() != Some(&indent) {
        indents.push(indent);
    }
    // `- - - x`: each compact entry is one more level.
    let mut block = 0;
    let mut rest = body;
    while let Some(r) = rest.strip_prefix("- ").or(rest.strip_prefix("-\t")) {
        block += 1;
        rest = r.trim_start();
    }
    block + indents.len()
}

/// Track flow brackets (`[`, `{`) across `line`, outside quoted scalars and
/// comments, into `flow`. False as soon as `flow + block` exceeds `limit`.
fn scan_flow(line: &str, flow: &mut usize, block: usize, limit: usize) -> bool {
    let mut prev = ' ';
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if prev.is_whitespace() => break,
            '"' | '\'' if prev.is_whitespace() || "[{,:".contains(prev) => {
                // Skip the quoted scalar (to the end of this line at most:
                // a multi-line scalar only hides brackets, it adds none).
                let mut esc = false;
                for q in chars.by_ref() {
                    if c == '"' && !esc && q == '\\' {
                        esc = true;
                        continue;
                    }
                    if q == c && !esc {
                        break;
                    }
                    esc = false;
                }
            }
            '[' | '{' => {
                *flow += 1;
                if *flow + block > limit {
                    return false;
                }
            }
            ']' | '}' => *flow = flow.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_and_block_nesting_are_refused_ordinary_documents_pass() {
        let deep = "[".repeat(100_000);
        assert_eq!(check_depth(&deep, MAX_DEPTH), Err(1));
        let deep = format!("a: 1\nb: {}", "{x: ".repeat(65));
        assert_eq!(check_depth(&deep, MAX_DEPTH), Err(2));
        let dashes = "- ".repeat(100);
        assert!(check_depth(&dashes, MAX_DEPTH).is_err());
        let nested: String = (0..70)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(check_depth(&nested, MAX_DEPTH).is_err());

        let ok =
            "- url: http://h:1\n  labels: {tier: '[[[[', x: \"{{{{\"}\n# [[[[[[\n- [a, [b, [c]]]\n";
        assert_eq!(check_depth(ok, 5), Ok(()));
        let json = format!(
            "[\n{}\n]",
            r#"  {"url": "http://h:1", "labels": {"a": "[[["}},"#.repeat(3)
        );
        assert_eq!(check_depth(&json, 3), Ok(()));
        assert_eq!(check_depth(&"[".repeat(63), MAX_DEPTH), Ok(()));
    }
}
