package postgres

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
)

// Key secrets look like "hxp-" followed by 48 base62 characters: the first KeyIDLength are the
// key's public id (stored in clear, used to find the row and safe to show and log), the rest
// are the secret part (about 238 bits of entropy). Only SHA-256 of the whole string is stored:
// a fast hash is enough because the secret is random, not a password.
const (
	// KeyPrefix starts every key secret.
	KeyPrefix = "hxp-"
	// KeyIDLength is the length of the public id that follows KeyPrefix.
	KeyIDLength = 8
	// keySecretLength is the length of the secret part after the id.
	keySecretLength = 40
	// KeyLength is the total length of a key secret.
	KeyLength = len(KeyPrefix) + KeyIDLength + keySecretLength
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomBase62 returns n characters drawn uniformly from base62 with crypto/rand. Bytes of 248
// and above are rejected so that every character is equally likely (248 = 4*62).
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random bytes: %w", err)
		}
		for _, b := range buf {
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out), nil
}

// newKeySecret generates a key secret and returns it with its public id.
func newKeySecret() (secret, id string, err error) {
	body, err := randomBase62(KeyIDLength + keySecretLength)
	if err != nil {
		return "", "", err
	}
	return KeyPrefix + body, body[:KeyIDLength], nil
}

// parseKeySecret checks the shape of a presented key and returns its public id.
func parseKeySecret(secret string) (id string, ok bool) {
	if len(secret) != KeyLength || !strings.HasPrefix(secret, KeyPrefix) {
		return "", false
	}
	body := secret[len(KeyPrefix):]
	for i := 0; i < len(body); i++ {
		if strings.IndexByte(base62, body[i]) < 0 {
			return "", false
		}
	}
	return body[:KeyIDLength], true
}

// hashKeySecret returns the stored form of a key secret.
func hashKeySecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// secretMatches compares a presented secret with a stored hash in constant time.
func secretMatches(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(hashKeySecret(secret), hash) == 1
}

// KeyIDOf returns the public id of a key secret, or "" when the string is not shaped like a
// key. Use it to name a key in logs without logging the secret.
func KeyIDOf(secret string) string {
	id, _ := parseKeySecret(secret)
	return id
}
