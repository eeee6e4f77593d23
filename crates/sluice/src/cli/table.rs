//! Tables for people: columns aligned, and on a terminal no wider than it (the widest columns give way,
//! cut with `…`). Into a pipe or a file every value is written whole.

use std::io::IsTerminal;

/// A table: a header and rows of cells, each row as many as the header.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Columns whose numbers read better on the right.
    right: Vec<bool>,
    /// Columns never cut (identities, which people copy).
    keep: Vec<bool>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
            right: vec![false; header.len()],
            keep: vec![false; header.len()],
        }
    }

    /// Never cuts the named columns.
    pub fn keep(mut self, columns: &[&str]) -> Table {
        for (i, h) in self.header.iter().enumerate() {
            self.keep[i] = columns.contains(h);
        }
        self
    }

    /// Aligns the named columns to the right.
    pub fn right(mut self, columns: &[&str]) -> Table {
        for (i, h) in self.header.iter().enumerate() {
            self.right[i] = columns.contains(h);
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The table as lines, fitted to `width` columns when given.
    pub fn render(&self, width: Option<usize>) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(clean(cell).chars().count());
            }
        }
        if let Some(limit) = width {
            let floors: Vec<usize> = (0..n)
                .map(|i| if self.keep[i] { widths[i] } else { widths[i].min(self.header[i].chars().count().max(6)) })
                .collect();
            fit(&mut widths, &floors, limit.saturating_sub(2 * (n.saturating_sub(1))));
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let text = cut(&clean(cell), widths[i]);
                let pad = widths[i] - text.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&text);
                } else {
                    line.push_str(&text);
                    if i + 1 < n {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, fitted to the terminal when standard output is one.
    pub fn print(&self) {
        super::write_out(&self.render(terminal_width()));
    }
}

/// Narrows the widest columns a character at a time, so that the wide ones end equally wide, until the sum
/// fits `limit`; never below the header's width or 6, and never a kept column.
fn fit(widths: &mut [usize], floors: &[usize], limit: usize) {
    let mut total: usize = widths.iter().sum();
    while total > limit {
        let Some(widest) = (0..widths.len()).filter(|i| widths[*i] > floors[*i]).max_by_key(|i| widths[*i]) else {
            return;
        };
        widths[widest] -= 1;
        total -= 1;
    }
}

/// A cell's text with control characters shown as spaces: a value never moves the cursor.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `text` cut to `width` characters, the last one `…` when anything was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The terminal's width when standard output is a terminal (`COLUMNS` wins when set).
pub fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(c);
    }
    rustix::termios::tcgetwinsize(&stdout).ok().map(|w| w.ws_col as usize).filter(|w| *w > 0).or(Some(80))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["Identity", "Count", "LastError"]).right(&["Count"]).keep(&["Identity"]);
        t.row(vec!["mx\\16".into(), "5".into(), "451 4.4.0 connection refused by the next hop".into()]);
        t.row(vec!["mx\\Submission".into(), "120".into(), String::new()]);
        t
    }

    #[test]
    fn columns_line_up_and_numbers_align_right() {
        let out = sample().render(None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Identity       Count  LastError");
        assert_eq!(lines[1], "mx\\16              5  451 4.4.0 connection refused by the next hop");
        assert_eq!(lines[2], "mx\\Submission    120");
    }

    #[test]
    fn on_a_narrow_terminal_the_widest_column_gives_way() {
        let out = sample().render(Some(40));
        assert!(out.lines().all(|l| l.chars().count() <= 40), "{out}");
        assert!(out.lines().nth(1).unwrap().ends_with('…'), "{out}");
        assert!(out.contains("mx\\Submission"), "the narrow columns stay whole: {out}");
    }

    #[test]
    fn a_terminal_narrower_than_the_headers_keeps_them_whole() {
        let out = sample().render(Some(10));
        assert!(out.starts_with("Identity"), "{out}");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut t = Table::new(&["A"]);
        t.row(vec!["x\u{1b}[31my\r\nz".into()]);
        assert!(!t.render(None).contains('\u{1b}'));
    }
}
