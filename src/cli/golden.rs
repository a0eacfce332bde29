//! Golden files for `plugin test --golden DIR`: each fixture is an input (`NAME.json`, or
//! `NAME.jsonl` as `eventyard tap` records) and the answers expected of it (`NAME.expected`, one
//! line per answer), and a line diff between expected and actual answers. Knows nothing of plugins.

use std::path::{Path, PathBuf};

use super::Failure;

/// One input file of a fixture directory and where its expected answers live.
pub(crate) struct Fixture {
    pub name: String,
    pub input: PathBuf,
}

impl Fixture {
    pub fn expected_path(&self) -> PathBuf {
        self.input.with_extension("expected")
    }

    /// The expected answers, or `None` when the fixture has none yet.
    pub fn expected(&self) -> Result<Option<Vec<String>>, Failure> {
        let path = self.expected_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.lines().map(str::to_owned).collect())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(Failure::input(format!("cannot read {}: {err}", path.display()))),
        }
    }

    pub fn write_expected(&self, answers: &[String]) -> Result<(), Failure> {
        let path = self.expected_path();
        let text: String = answers.iter().map(|line| format!("{line}\n")).collect();
        std::fs::write(&path, text).map_err(|err| Failure::input(format!("cannot write {}: {err}", path.display())))
    }
}

/// The fixtures of `dir`, by name.
pub(crate) fn fixtures(dir: &Path) -> Result<Vec<Fixture>, Failure> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| Failure::input(format!("cannot read {}: {err}", dir.display())))?;
    let mut fixtures: Vec<Fixture> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json" || ext == "jsonl"))
        .map(|input| Fixture { name: input.file_stem().unwrap_or_default().to_string_lossy().into_owned(), input })
        .collect();
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    if fixtures.is_empty() {
        return Err(Failure::input(format!("{} holds no fixtures (NAME.json or NAME.jsonl)", dir.display())));
    }
    Ok(fixtures)
}

/// The lines of a diff from `expected` to `actual`: `- ` for a line only expected, `+ ` for a line
/// only in the actual answers, `  ` for a line in both (the longest common subsequence).
pub(crate) fn diff(expected: &[String], actual: &[String]) -> Vec<String> {
    let (n, m) = (expected.len(), actual.len());
    // common[i][j]: the longest common subsequence of expected[i..] and actual[j..].
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if expected[i] == actual[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            lines.push(format!("  {}", expected[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(format!("- {}", expected[i]));
            i += 1;
        } else {
            lines.push(format!("+ {}", actual[j]));
            j += 1;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_diff_keeps_common_lines_and_marks_the_rest() {
        assert_eq!(diff(&lines("a b c"), &lines("a b c")), ["  a", "  b", "  c"]);
        assert_eq!(diff(&lines("a b c"), &lines("a x c")), ["  a", "- b", "+ x", "  c"]);
        assert_eq!(diff(&lines("a b"), &lines("")), ["- a", "- b"]);
        assert_eq!(diff(&lines(""), &lines("a")), ["+ a"]);
    }
}
