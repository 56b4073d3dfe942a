use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Render<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// A dead-letter file: one JSON line per item that could not be delivered,
/// `{"reason":…,"attempts":…,"item":…}`, written and flushed as it happens.
pub struct DeadLetters<T> {
    path: PathBuf,
    file: Mutex<File>,
    render: Render<T>,
    written: AtomicU64,
    write_errors: AtomicU64,
}

impl<T> std::fmt::Debug for DeadLetters<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("path", &self.path)
            .field("written", &self.written())
            .finish()
    }
}

impl<T> DeadLetters<T> {
    /// Appends to `path` (created if missing). `render` turns an item into a JSON value (an
    /// object, a number, a quoted string…) for the `item` field.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub fn open(
        path: impl AsRef<Path>,
        render: impl Fn(&T) -> String + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(DeadLetters {
            path,
            file: Mutex::new(file),
            render: Arc::new(render),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        })
    }

    /// Records an undeliverable item with its reason. A failure to write is counted in
    /// [`write_errors`](Self::write_errors) and returned.
    ///
    /// # Errors
    /// When the line cannot be written.
    pub fn record(&self, item: &T, reason: &str, attempts: u32) -> std::io::Result<()> {
        let line = format!(
            "{{\"reason\":{},\"attempts\":{attempts},\"item\":{}}}\n",
            json_string(reason),
            (self.render)(item)
        );
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Items written to the file.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Items that could not even be dead-lettered (the file write failed).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Quotes `s` as a JSON string.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            super::json_string("a\"b\\c\nd\u{1}"),
            r#""a\"b\\c\nd\u0001""#
        );
    }
}
