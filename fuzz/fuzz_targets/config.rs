//! The configuration parser: any text is a validated `Config` or errors that each name a
//! place in the file; it never panics.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/portcullis/gateway.toml");
    match Config::parse(path, src) {
        Ok(config) => {
            // Relative paths are anchored at the file's directory.
            assert!(config.server.data_dir.is_absolute());
            assert!(config.server.policies.is_absolute());
            assert!(config.server.workers >= 1);
        }
        Err(errors) => {
            // Every error found is reported, at least one, each at a place in the file,
            // in file order.
            assert!(!errors.0.is_empty());
            let mut last = 0;
            for e in &errors.0 {
                assert_eq!(e.file, path);
                if let Some(line) = e.line {
                    assert!(line >= 1 && line <= src.lines().count().max(1) + 1, "{e}");
                    assert!(line >= last, "errors out of file order: {errors}");
                    last = line;
                }
            }
            let _ = errors.to_string();
        }
    }
});
