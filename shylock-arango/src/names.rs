//! Collection-name validation and the mapping from lock names to document keys.
//!
//! See [`lock_key`](crate::lock_key) for the mapping.

use sha2::{Digest, Sha256};

/// The longest document key ArangoDB accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 254;

/// The longest collection name this backend accepts, in bytes (ArangoDB's
/// limit for the traditional naming convention).
pub const MAX_COLLECTION_NAME_BYTES: usize = 256;

const LITERAL_PREFIX: &str = "n-";
const HASHED_PREFIX: &str = "h-";

/// Bytes of a lock name that appear unescaped in its key.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-.@()+,=;$!*'".contains(&b)
}

/// The document key of a lock name.
///
/// ArangoDB document keys are 1 to 254 bytes of `A-Z a-z 0-9` and
/// `_ - . @ ( ) + , = ; $ ! * ' % :`; every other character (spaces, `/`,
/// all non-ASCII) is refused. Lock names are any non-empty UTF-8 string of up
/// to 1024 bytes, so [`lock_key`] maps each name to a valid key, injectively:
///
/// * **`n-` + the name, percent-encoded**, when that fits in 254 bytes. Bytes
///   of the name outside `A-Z a-z 0-9 _ - . @ ( ) + , = ; $ ! * '` (including
///   `%` itself, `:` and every byte of a non-ASCII character) are written as
///   `%XX` (uppercase hex). `my-lock` becomes `n-my-lock`, `a b` becomes
///   `n-a%20b`, `Äpfel` becomes `n-%C3%84pfel`.
/// * **`h-` + the SHA-256 of the name** (64 lowercase hex digits) otherwise
///   (66 bytes in all).
///
/// Two different names never share a key: percent-encoding is injective
/// (`%` is always escaped, so every `%XX` in a key stands for one byte), the
/// prefixes `n-` and `h-` keep the two forms apart, and two names with the
/// same hashed key would be a SHA-256 collision. The original name is stored
/// in the document and checked on every read as well.
///
/// ```
/// assert_eq!(shylock_arango::lock_key("my-lock"), "n-my-lock");
/// assert_eq!(shylock_arango::lock_key("Äpfel"), "n-%C3%84pfel");
/// assert!(shylock_arango::lock_key(&"x".repeat(300)).starts_with("h-"));
/// ```
///
/// The result is always a valid ArangoDB document key (1 to 254 bytes of
/// allowed characters) and different names always give different keys.
pub fn lock_key(name: &str) -> String {
    let mut key = String::with_capacity(LITERAL_PREFIX.len() + name.len());
    key.push_str(LITERAL_PREFIX);
    for &b in name.as_bytes() {
        if is_plain(b) {
            key.push(char::from(b));
        } else {
            key.push('%');
            key.push(hex_digit(b >> 4, true));
            key.push(hex_digit(b & 0xf, true));
        }
        if key.len() > MAX_KEY_BYTES {
            return hashed_key(name);
        }
    }
    key
}

fn hashed_key(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut key = String::with_capacity(HASHED_PREFIX.len() + 64);
    key.push_str(HASHED_PREFIX);
    for b in digest.iter() {
        key.push(hex_digit(b >> 4, false));
        key.push(hex_digit(b & 0xf, false));
    }
    key
}

fn hex_digit(v: u8, upper: bool) -> char {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    char::from(digits[usize::from(v & 0xf)])
}

/// Check a collection name against ArangoDB's traditional naming convention:
/// 1 to 256 bytes, an ASCII letter first, then ASCII letters, digits, `_`
/// and `-`. (Servers started with `--database.extended-names` accept more;
/// every name that passes here is valid under both conventions.)
///
/// # Errors
/// A description of what is wrong with the name.
pub fn validate_collection_name(name: &str) -> Result<(), String> {
    let Some(first) = name.bytes().next() else {
        return Err("a collection name must not be empty".into());
    };
    if name.len() > MAX_COLLECTION_NAME_BYTES {
        return Err(format!(
            "collection name `{name}` has {} bytes; ArangoDB allows at most {MAX_COLLECTION_NAME_BYTES}",
            name.len()
        ));
    }
    if !first.is_ascii_alphabetic() {
        return Err(format!(
            "collection name `{name}` must start with a letter (names starting with `_` are system collections)"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "collection name `{name}` contains `{bad}`; only letters, digits, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_names_are_kept() {
        assert_eq!(lock_key("my-lock"), "n-my-lock");
        assert_eq!(
            lock_key("a.b@c(d)+e,f=g;h$i!j*k'l"),
            "n-a.b@c(d)+e,f=g;h$i!j*k'l"
        );
    }

    #[test]
    fn other_bytes_are_escaped() {
        assert_eq!(lock_key("a b"), "n-a%20b");
        assert_eq!(lock_key("50%"), "n-50%25");
        assert_eq!(lock_key("a:b/c"), "n-a%3Ab%2Fc");
        assert_eq!(lock_key("Äpfel"), "n-%C3%84pfel");
    }

    #[test]
    fn long_names_are_hashed() {
        let name = "x".repeat(300);
        let key = lock_key(&name);
        assert!(key.starts_with("h-"));
        assert_eq!(key.len(), 66);
        // SHA-256("abc"), FIPS 180-2 test vector, through a name that escapes to > 254 bytes.
        assert_eq!(
            hashed_key("abc"),
            "h-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn boundary_between_forms() {
        let fits = "a".repeat(MAX_KEY_BYTES - 2);
        assert_eq!(lock_key(&fits), format!("n-{fits}"));
        let too_long = "a".repeat(MAX_KEY_BYTES - 1);
        assert!(lock_key(&too_long).starts_with("h-"));
        // An escape that would cross the limit switches to the hashed form.
        let almost = format!("{}é", "a".repeat(MAX_KEY_BYTES - 6));
        assert!(lock_key(&almost).starts_with("h-"));
    }

    #[test]
    fn collection_names() {
        assert!(validate_collection_name("shylock").is_ok());
        assert!(validate_collection_name("Locks_2-b").is_ok());
        assert!(validate_collection_name(&"a".repeat(256)).is_ok());
        for bad in [
            "",
            "_system",
            "1abc",
            "-x",
            "a b",
            "a/b",
            "a.b",
            "lås",
            &"a".repeat(257),
        ] {
            assert!(
                validate_collection_name(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
