//! Operator passwords: Argon2id hashes in PHC strings.

/// Verifies a password against an Argon2 PHC hash.
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Hashes a password for `--operator-password-file` (Argon2id, random salt).
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("OS randomness");
    let salt = SaltString::encode_b64(&salt).expect("salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let h = hash_password("s3cret");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("garbage", "s3cret"));
    }
}
