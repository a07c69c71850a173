//go:build integration

package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/s3mount/s3mount/test/harness"
)

// need fails the test when a program it runs is missing: `make deps`
// installs them, and a test that skips would pass with the feature broken.
func need(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed (make deps installs it): %v", p, err)
		}
	}
}

// TestProgramVimSave edits a file with vim in ex mode: a swap file written
// in blocks at any offset, the original renamed to a backup, the new file
// written, the backup deleted.
func TestProgramVimSave(t *testing.T) {
	need(t, "vim")
	e := newEnv(t)
	e.put("notes.txt", []byte("alpha\nbeta\ngamma\n"))
	mnt := e.mount()
	p := filepath.Join(mnt, "notes.txt")
	sh(t, time.Minute, "vim", "-Es", "-u", "NONE", "-i", "NONE", "-N",
		"-c", "set swapfile directory=. writebackup nobackup backupcopy=no backupdir=.",
		"-c", "%s/beta/BETA/", "-c", "$put ='delta'", "-c", "wq", p)
	want := "alpha\nBETA\ngamma\ndelta\n"
	if got := string(e.get("notes.txt")); got != want {
		t.Errorf("after vim's save the object holds %q, want %q", got, want)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != want {
		t.Errorf("read through the mount after the save: %q, %v", got, err)
	}
	if keys := e.keys(""); len(keys) != 1 || keys[0] != "notes.txt" {
		// writebackup: the original became notes.txt~ during the write,
		// deleted after it; the swap file .notes.txt.swp is gone too.
		t.Errorf("keys after the save: %q, want only notes.txt", keys)
	}
}

// TestProgramGitCloneFsck clones a local repository into the mount through
// the pack protocol (index-pack writes a pack, rewrites its header and reads
// it back), checks it with git fsck, then commits inside the mount (index
// lock file + rename) and checks again from a fresh mount.
func TestProgramGitCloneFsck(t *testing.T) {
	need(t, "git")
	e := newEnv(t)
	src := t.TempDir()
	git := func(dir string, args ...string) string {
		t.Helper()
		return sh(t, 5*time.Minute, "git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com",
			"-c", "init.defaultBranch=main", "-c", "safe.directory=*"}, args...)...)
	}
	git(src, "init", "-q")
	for i := range 30 {
		body := bytes.Repeat([]byte(fmt.Sprintf("file %d line\n", i)), 200*(i+1))
		if i == 29 {
			body = harness.RandomBytes(12 << 20) // a pack past one part
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d.txt", i)), body, 0o644); err != nil {
			t.Fatal(err)
		}
		git(src, "add", ".")
		git(src, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
	}
	mnt := e.mount("--part-size", "5M")
	dst := filepath.Join(mnt, "repo")
	sh(t, 10*time.Minute, "git", "-c", "safe.directory=*", "clone", "-q", "--no-local", src, dst)
	git(dst, "fsck", "--full", "--strict")
	if err := os.WriteFile(filepath.Join(dst, "new.txt"), []byte("made in the mount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(dst, "add", "new.txt")
	git(dst, "commit", "-q", "-m", "in the mount")
	git(dst, "gc", "-q") // repacks: packs and indexes rewritten, old ones deleted
	fresh := e.mount()
	git(filepath.Join(fresh, "repo"), "fsck", "--full", "--strict")
	if n := strings.TrimSpace(git(filepath.Join(fresh, "repo"), "rev-list", "--count", "HEAD")); n != "31" {
		t.Errorf("commits seen from a fresh mount: %s, want 31", n)
	}
	if st := git(filepath.Join(fresh, "repo"), "status", "--porcelain"); st != "" {
		t.Errorf("git status in a fresh mount is not clean:\n%s", st)
	}
}

// TestProgramSqlite creates a database, inserts 10,000 rows in
// transactions (journal files, page writes at any offset, fsync), and reads
// them back, also from a fresh mount.
func TestProgramSqlite(t *testing.T) {
	need(t, "sqlite3")
	e := newEnv(t)
	mnt := e.mount()
	db := filepath.Join(mnt, "data", "app.db")
	if err := os.Mkdir(filepath.Join(mnt, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, 5*time.Minute, "sqlite3", db, `create table t(id integer primary key, name text, v real);`)
	for batch := range 10 {
		sql := fmt.Sprintf(`begin; with recursive n(i) as (select 1 union all select i+1 from n where i < 1000)
			insert into t(id, name, v) select %d*1000+i, 'row '||(%d*1000+i), (%d*1000+i)*0.5 from n; commit;`,
			batch, batch, batch)
		sh(t, 5*time.Minute, "sqlite3", db, sql)
	}
	const query = `select count(*), sum(id), max(name) from t where v > 0;`
	want := "10000|50005000|row 9999\n"
	if got := sh(t, time.Minute, "sqlite3", db, query); got != want {
		t.Errorf("query through the mount: %q, want %q", got, want)
	}
	if got := sh(t, time.Minute, "sqlite3", db, "pragma integrity_check;"); got != "ok\n" {
		t.Errorf("integrity_check: %q", got)
	}
	fresh := e.mount()
	if got := sh(t, time.Minute, "sqlite3", filepath.Join(fresh, "data", "app.db"), query); got != want {
		t.Errorf("query from a fresh mount: %q, want %q", got, want)
	}
	if keys := e.keys("data/"); len(keys) != 2 || keys[0] != "data/" || keys[1] != "data/app.db" {
		t.Errorf("keys under data/: %q, want the directory marker and the database (no journal left)", keys)
	}
}

// TestShellAppendTruncateSparse: >> appends to an object, truncate -s down
// and up on a closed file, and cp --sparse=always of a sparse file.
func TestShellAppendTruncateSparse(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	p := filepath.Join(mnt, "log.txt")
	for i := range 3 {
		sh(t, time.Minute, "sh", "-c", fmt.Sprintf("echo line %d >> %s", i, p))
	}
	if got := string(e.get("log.txt")); got != "line 0\nline 1\nline 2\n" {
		t.Errorf("after three >>: %q", got)
	}
	sh(t, time.Minute, "truncate", "-s", "4", p)
	if got := string(e.get("log.txt")); got != "line" {
		t.Errorf("after truncate -s 4: %q", got)
	}
	sh(t, time.Minute, "truncate", "-s", "1M", p)
	got := e.get("log.txt")
	if len(got) != mib || string(got[:4]) != "line" || bytes.Count(got[4:], []byte{0}) != mib-4 {
		t.Errorf("after truncate -s 1M: %d bytes starting %q, want 1 MiB of zeros after \"line\"", len(got), got[:min(8, len(got))])
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != mib {
		t.Errorf("stat after truncate -s 1M: %v, %v", fi, err)
	}

	local := filepath.Join(t.TempDir(), "sparse")
	sh(t, time.Minute, "truncate", "-s", "20M", local)
	f, err := os.OpenFile(local, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 7*mib + 3, 20*mib - 5} {
		if _, err := f.WriteAt([]byte("data!"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	sh(t, 5*time.Minute, "cp", "--sparse=always", local, filepath.Join(mnt, "sparse"))
	want, _, err := harness.FileSHA256(local)
	if err != nil {
		t.Fatal(err)
	}
	if got := harness.SHA256Hex(e.get("sparse")); got != want {
		t.Errorf("sparse copy: sha256 %s, want %s", got, want)
	}
}

// TestWriteInPlaceLargeObject patches the middle of a multipart object
// written through the mount: the commit is conditional on the ETag the
// server gave at CompleteMultipartUpload, and reuses the unchanged parts
// with UploadPartCopy.
func TestWriteInPlaceLargeObject(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount("--part-size", "5M")
	p := filepath.Join(mnt, "big.bin")
	orig := harness.RandomBytes(23 * mib)
	if err := os.WriteFile(p, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("PATCH"), 12*mib); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after patching a multipart object: %v", err)
	}
	want := append([]byte(nil), orig...)
	copy(want[12*mib:], "PATCH")
	if got := e.get("big.bin"); !bytes.Equal(got, want) {
		t.Errorf("patched object differs at %d", firstDiff(got, want))
	}
	// And once more, now conditional on the ETag of that commit.
	sh(t, time.Minute, "dd", "if=/dev/zero", "of="+p, "bs=1", "count=3", "seek=100", "conv=notrunc", "status=none")
	copy(want[100:], []byte{0, 0, 0})
	if got := e.get("big.bin"); !bytes.Equal(got, want) {
		t.Errorf("object after a second in-place write differs at %d", firstDiff(got, want))
	}
}

// TestWriteFsyncIsDurable: once fsync returns, the bytes are in S3, before
// close.
func TestWriteFsyncIsDurable(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	f, err := os.Create(filepath.Join(mnt, "durable"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("first"); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := string(e.get("durable")); got != "first" {
		t.Errorf("after fsync: %q", got)
	}
	if _, err := f.WriteAt([]byte("FI"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := string(e.get("durable")); got != "FIrst" {
		t.Errorf("after an in-place write and fsync: %q", got)
	}
}

// TestWriteConflictKeepsBytes: the object changes in S3 between open and
// close; close fails with ESTALE, the other client's object stays, and the
// bytes written are kept under --cache-dir/recovery with a sidecar.
func TestWriteConflictKeepsBytes(t *testing.T) {
	e := newEnv(t)
	e.put("shared.txt", []byte("v1"))
	cacheDir := t.TempDir()
	mnt := e.mount("--cache-dir", cacheDir)
	f, err := os.OpenFile(filepath.Join(mnt, "shared.txt"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("mine"), 0); err != nil {
		t.Fatal(err)
	}
	e.put("shared.txt", []byte("theirs"))
	err = f.Close()
	if !errors.Is(err, syscall.ESTALE) {
		t.Errorf("close after another client changed the object: %v, want ESTALE", err)
	}
	if got := string(e.get("shared.txt")); got != "theirs" {
		t.Errorf("the other client's object was clobbered: %q", got)
	}
	var kept []string
	for range 100 {
		kept, _ = filepath.Glob(filepath.Join(cacheDir, "recovery", "*shared.txt"))
		if len(kept) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(kept) != 1 {
		t.Fatalf("recovery files: %v, want one", kept)
	}
	if b, err := os.ReadFile(kept[0]); err != nil || string(b) != "mine" {
		t.Errorf("kept bytes: %q, %v; want \"mine\" (what was written over v1's first bytes)", b, err)
	}
	if b, err := os.ReadFile(kept[0] + ".json"); err != nil || !bytes.Contains(b, []byte(`"key": "shared.txt"`)) {
		t.Errorf("sidecar: %s, %v", b, err)
	}
}

// TestWriteStagingLimit: a write in place past --staging-limit fails with
// ENOSPC; what was written before it is committed at close.
func TestWriteStagingLimit(t *testing.T) {
	e := newEnv(t)
	orig := harness.RandomBytes(4 * mib)
	e.put("big", orig)
	mnt := e.mount("--staging-limit", "1M")
	_, stderr, err := shErr(time.Minute, "dd", "if=/dev/zero", "of="+filepath.Join(mnt, "big"), "bs=1M", "count=2",
		"seek=1", "conv=notrunc")
	if err == nil || !strings.Contains(stderr, "No space left on device") {
		t.Errorf("dd past --staging-limit: %v, %s; want No space left on device", err, stderr)
	}
	want := append([]byte(nil), orig...)
	clear(want[mib : 2*mib]) // dd's first 1 MiB block fit; its second did not
	if got := e.get("big"); !bytes.Equal(got, want) {
		t.Errorf("the object differs from the original with its second MiB zeroed (at %d)", firstDiff(got, want))
	}
}

// TestWriteLargeFileGrowsParts writes 6 GiB with 10 MiB parts: past 500
// parts the part size doubles, so the upload needs 558 parts (500 of
// 10 MiB, 58 of 20 MiB), not 615. (With 5 MiB parts it would need 865, more
// than versitygw's posix backend completes: it answers 500 from about 870
// parts, an xattr ENOSPC; 600 work.)
func TestWriteLargeFileGrowsParts(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount("--part-size", "10M")
	const size = 6 << 30
	f, err := os.Create(filepath.Join(mnt, "six"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	chunk := harness.RandomBytes(mib)
	start := time.Now()
	for i := 0; i < size/mib; i++ {
		chunk[0], chunk[1], chunk[2] = byte(i), byte(i>>8), byte(i>>16) // every MiB differs
		if _, err := f.Write(chunk); err != nil {
			t.Fatalf("write at %d: %v", i*mib, err)
		}
		h.Write(chunk)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	t.Logf("wrote 6 GiB in %v", time.Since(start).Round(time.Second))
	n, etag, err := e.c.HeadETag(e.ctx, e.bucket, "six")
	if err != nil || n != size {
		t.Fatalf("HeadObject: %d bytes, %v", n, err)
	}
	parts, _ := strconv.Atoi(strings.TrimSuffix(etag[strings.LastIndexByte(etag, '-')+1:], `"`))
	if parts != 558 {
		t.Errorf("ETag %s: %d parts, want 558 (500 of 10 MiB, then 20 MiB)", etag, parts)
	}
	sum := sha256.New()
	if _, err := e.c.GetObjectTo(e.ctx, e.bucket, "six", sum); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sum.Sum(nil)) != hex.EncodeToString(h.Sum(nil)) {
		t.Error("the 6 GiB object differs from what was written")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestMvDirectoryMadeInTheMount renames directories that have markers
// (made with mkdir through the mount), with a subdirectory, and renames
// one back.
func TestMvDirectoryMadeInTheMount(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	sh(t, time.Minute, "mkdir", "-p", filepath.Join(mnt, "d1", "sub"))
	for _, f := range []string{"d1/a", "d1/b", "d1/sub/c"} {
		if err := os.WriteFile(filepath.Join(mnt, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, time.Minute, "mv", filepath.Join(mnt, "d1"), filepath.Join(mnt, "d2"))
	want := []string{"d2/", "d2/a", "d2/b", "d2/sub/", "d2/sub/c"}
	if keys := e.keys(""); strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("keys after mv d1 d2: %q, want %q", keys, want)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "d2", "sub", "c")); err != nil || string(b) != "d1/sub/c" {
		t.Errorf("read d2/sub/c: %q, %v", b, err)
	}
	sh(t, time.Minute, "mv", filepath.Join(mnt, "d2", "sub"), filepath.Join(mnt, "sub2"))
	if keys := e.keys(""); strings.Join(keys, " ") != "d2/ d2/a d2/b sub2/ sub2/c" {
		t.Errorf("keys after mv d2/sub sub2: %q", keys)
	}
}

// TestWriteOnlyBypassesPageCache: what a program writes through an
// O_WRONLY descriptor (cp, tar, dd of=) goes to the daemon without filling
// the kernel page cache of the file (FOPEN_DIRECT_IO); readers see what
// was written, also one that had the old bytes cached and one that opens
// while the writer is still open. The page cache is looked at with
// mincore(2) through a mapping of a descriptor opened before the write
// (a new open would itself drop the pages of a changed file).
func TestWriteOnlyBypassesPageCache(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	p := filepath.Join(mnt, "wo.bin")
	const size = 8 << 20
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	var werr error
	for off := 0; off < size && werr == nil; off += len(chunk) {
		_, werr = w.Write(chunk)
	}
	resident, merr := residentPages(r, size)
	cerr := w.Close()
	if werr != nil || cerr != nil || merr != nil {
		t.Fatalf("write %v, close %v, mincore %v", werr, cerr, merr)
	}
	if resident != 0 {
		t.Errorf("after writing %d bytes write-only: %d pages of the file in the page cache, want 0", size, resident)
	}

	// Cache the bytes, then overwrite a middle range write-only.
	if b, err := os.ReadFile(p); err != nil || len(b) != size {
		t.Fatalf("read back: %d bytes, %v", len(b), err)
	}
	if n, err := residentPages(r, size); err != nil || n == 0 {
		t.Errorf("after reading the file, %d pages cached (%v): the check above proves nothing", n, err)
	}
	w, err = os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, werr = w.WriteAt([]byte("NEW!"), size/2)
	var during []byte
	early := make([]byte, 4)
	if werr == nil {
		during, werr = os.ReadFile(p)
	}
	if werr == nil {
		_, werr = r.ReadAt(early, size/2)
	}
	cerr = w.Close()
	if werr != nil || cerr != nil {
		t.Fatalf("write/read %v, close %v", werr, cerr)
	}
	if got := string(during[size/2 : size/2+4]); got != "NEW!" {
		t.Errorf("a reader opened while the writer is open sees %q, want NEW!", got)
	}
	if got := string(early); got != "NEW!" {
		t.Errorf("a reader opened before, with the old bytes cached, sees %q, want NEW!", got)
	}
	after, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != size || string(after[size/2:size/2+4]) != "NEW!" {
		t.Errorf("after close: %d bytes, %q at the middle", len(after), after[size/2:min(len(after), size/2+4)])
	}
	if got := e.get("wo.bin"); len(got) != size || string(got[size/2:size/2+4]) != "NEW!" {
		t.Errorf("in S3: %d bytes, want %d with NEW! in the middle", len(got), size)
	}
}

// residentPages maps the first size bytes of f read-only and counts the
// pages mincore(2) reports in the page cache (the mapping faults nothing
// in).
func residentPages(f *os.File, size int) (int, error) {
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, en := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); en != 0 {
		return 0, fmt.Errorf("mincore: %w", en)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n, nil
}

// TestAppendWithReaderOpen: `>>` appends while a reader holds the file
// open (tail -f, a log viewer). The reader sees each append, reading past
// the old end never makes the kernel shrink the file, and no append lands
// over an earlier one (found by a break-it tryout: line1 was overwritten
// by line2).
func TestAppendWithReaderOpen(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	p := filepath.Join(mnt, "log.txt")
	if err := os.WriteFile(p, []byte("start\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 100)
	want := "start\n"
	for i := 1; i <= 3; i++ {
		line := fmt.Sprintf("line%d\n", i)
		// The shell's >>: a write-only O_APPEND descriptor per command.
		out, err := exec.Command("sh", "-c", "printf '"+strings.TrimSuffix(line, "\n")+"\\n' >> "+p).CombinedOutput()
		if err != nil {
			t.Fatalf("append %d: %v: %s", i, err, out)
		}
		n, err := r.ReadAt(buf, int64(len(want)))
		if got := string(buf[:n]); got != line {
			t.Errorf("after append %d the open reader reads %q at %d (%v), want %q", i, got, len(want), err, line)
		}
		want += line
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != want {
		t.Errorf("file: %q (%v), want %q", got, err, want)
	}
	if got := string(e.get("log.txt")); got != want {
		t.Errorf("in S3: %q, want %q", got, want)
	}
}

// TestReadBackWhileOthersRead: a program that opens a file read-write,
// writes and reads back what it wrote (sqlite, editors' swap files) while
// other programs keep opening and reading the same file. Two bugs made
// this fail: opens and commits dropped the kernel's pages of the file
// while a write was on its way to the daemon, and a read in between
// cached the old bytes, which the writer then read back; and a reader
// waiting on another's block fetch could find the block's memory reused
// ("block recycled before it was read", EIO).
func TestReadBackWhileOthersRead(t *testing.T) {
	const size = 3_000_000
	e := newEnv(t)
	mnt := e.mount()
	p := filepath.Join(mnt, "shared.bin")
	model := make([]byte, size)
	for i := range model {
		model[i] = byte(i * 7)
	}
	if err := os.WriteFile(p, model, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var readerErrs [4]error
	var readerRuns [4]int
	done := make(chan struct{})
	for r := range readerErrs {
		go func() {
			defer func() { done <- struct{}{} }()
			for time.Now().Before(deadline) {
				b, err := os.ReadFile(p)
				if err != nil {
					readerErrs[r] = err
					return
				}
				if len(b) != size {
					readerErrs[r] = fmt.Errorf("read %d bytes, want %d", len(b), size)
					return
				}
				readerRuns[r]++
			}
		}()
	}
	rounds, stale := 0, 0
	var werr error
	seed := uint32(1)
	rnd := func(n int) int { seed = seed*1664525 + 1013904223; return int(seed>>8) % n }
	for time.Now().Before(deadline) && werr == nil {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			werr = err
			break
		}
		for k := 0; k < 3; k++ {
			off, n := rnd(size-4096), 1+rnd(4095)
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(rnd(256))
			}
			if _, err := f.WriteAt(data, int64(off)); err != nil {
				werr = err
				break
			}
			copy(model[off:], data)
			back := make([]byte, n)
			if _, err := f.ReadAt(back, int64(off)); err != nil {
				werr = err
				break
			}
			if !bytes.Equal(back, data) {
				stale++
				if stale <= 3 {
					t.Errorf("round %d: read back %d bytes at %d just written: other bytes", rounds, n, off)
				}
			}
		}
		if err := f.Close(); err != nil && werr == nil {
			werr = err
		}
		rounds++
	}
	for range readerErrs {
		<-done
	}
	if werr != nil {
		t.Errorf("writer, round %d: %v", rounds, werr)
	}
	for r, err := range readerErrs {
		if err != nil {
			t.Errorf("reader %d, after %d reads: %v", r, readerRuns[r], err)
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d read-backs returned other bytes than just written", stale, 3*rounds)
	}
	t.Logf("%d writer rounds; reads %v", rounds, readerRuns)
	if got := e.get("shared.bin"); !bytes.Equal(got, model) {
		t.Errorf("S3 holds %d bytes that differ from what the writer wrote", len(got))
	}
}

// TestHeldDescriptorFollowsRewrites: a program keeps a file open and
// reads it in a loop (a log viewer, tail -f) while another rewrites it in
// place (O_RDWR, ftruncate to 0, write, close) on the same mount. Soon
// after each close, the held descriptor must read the new bytes: reads
// that crossed the rewrite may have cached a short (zero-padded) page,
// which the release of the writer drops. Before, such a page stayed until
// the next rewrite.
func TestHeldDescriptorFollowsRewrites(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	p := filepath.Join(mnt, "rewritten.txt")
	version := func(k int) []byte { return []byte(fmt.Sprintf("V%08d\n", k)) }
	if err := os.WriteFile(p, version(0), 0o644); err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 100)
		for {
			select {
			case <-stop:
				return
			default:
				held.ReadAt(buf, 0) // errors and short reads are the crossing's
			}
		}
	}()
	bad := 0
	for k := 1; k <= 40; k++ {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(version(k), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the release is asynchronous
		buf := make([]byte, 100)
		n, _ := held.ReadAt(buf, 0)
		if !bytes.Equal(buf[:n], version(k)) {
			bad++
			if bad <= 3 {
				t.Errorf("0.3 s after version %d was closed, the held descriptor reads %q", k, buf[:n])
			}
		}
	}
	close(stop)
	<-done
	if bad > 0 {
		t.Errorf("%d of 40 versions not read by the held descriptor 0.3 s after their close", bad)
	}
}
