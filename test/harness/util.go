package harness

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// RandomHex returns 2*n lowercase hex characters from crypto/rand.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

var nonBucketChars = regexp.MustCompile(`[^a-z0-9-]+`)

// BucketName makes a valid, unique bucket name "s3mt-<label>-<rand>" from a
// label such as a test name.
func BucketName(label string) string {
	l := strings.ToLower(label)
	l = nonBucketChars.ReplaceAllString(l, "-")
	l = strings.Trim(l, "-")
	suffix := RandomHex(4)
	// 63 max: "s3mt-" (5) + label + "-" (1) + 8.
	if max := 63 - 5 - 1 - len(suffix); len(l) > max {
		l = strings.Trim(l[:max], "-")
	}
	if l == "" {
		l = "t"
	}
	return "s3mt-" + l + "-" + suffix
}

// RandomBytes returns n pseudo-random bytes (fast, not for secrets).
func RandomBytes(n int) []byte {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		panic(err)
	}
	b := make([]byte, n)
	_, _ = mrand.NewChaCha8(seed).Read(b)
	return b
}

// WriteRandomFile writes n pseudo-random bytes to path and returns their
// sha256 in hex.
func WriteRandomFile(path string, n int64) (string, error) {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), mrand.NewChaCha8(seed), n); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 returns the hex sha256 and size of a file.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// SHA256Hex is sha256 of b in hex.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RepoRoot finds the s3mount module root: the nearest directory at or above
// the working directory whose go.mod declares github.com/s3mount/s3mount.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && regexp.MustCompile(`(?m)^module\s+github\.com/s3mount/s3mount\s*$`).Match(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for github.com/s3mount/s3mount above the working directory")
		}
		dir = parent
	}
}
