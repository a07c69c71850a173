// Package fs is the s3mount filesystem: a go-fuse/v2 node tree over one
// bucket (or a prefix of it). It speaks to S3 only through s3backend.Client
// and keeps state only in cache.Blocks, cache.Meta and its nodes.
//
// # Names
//
// A directory is a "dir/" marker object or, implicitly, the prefix of deeper
// keys. Lookup of "name" under directory key prefix P sends HEAD P+name and
// LIST P+name+"/" (max-keys 1) at once, so a deep path resolves on a cold
// cache without listing its parents; when both a file "a" and keys under
// "a/" exist, "a" is a directory, in lookup and readdir alike. Keys whose
// segment cannot be a file name (empty, ".", "..", over 255 bytes) are
// hidden and logged once.
//
// # Reads
//
// read.go: fixed-size blocks (BlockSize) fetched with ranged GETs into the
// shared block cache keyed by bucket, key, ETag and block number; a handle
// that reads sequentially keeps up to 2×DownloadThreads blocks in flight
// ahead of the reader, DownloadThreads GETs at a time.
//
// # Writes
//
// write.go: a file open for writing has one content shared by its
// writable handles. Written sequentially from empty, it is streamed as a
// multipart upload (PartSize parts, UploadConcurrency parts in flight) or,
// when it stays under one part, a single PutObject; anything else stages it
// in a sparse local file (stage.go) uploaded with UploadPart and
// UploadPartCopy. The object is committed at flush, fsync and release under
// If-None-Match / If-Match; a failed commit returns EIO (ESTALE for a lost
// race) and keeps staged bytes for recovery.
//
// # Metadata
//
// attr.go: mode, uid, gid and mtime are the object's x-amz-meta-mode, -uid,
// -gid and -mtime, as s3fs writes them; symlinks (symlink.go) are objects
// whose body is the target and whose mode says S_IFLNK. Listings carry no
// user metadata, so Readdir HEADs the files it lists (32 at a time per
// mount) unless the stat cache holds them for the same ETag; every path
// that fills the stat cache thus shows the same attributes.
//
// # Rename
//
// rename.go: a file is CopyObject + DeleteObject; a directory moves every
// key under its prefix, up to Config.MaxRenameObjects (EXDEV beyond), and
// re-keys the nodes of its subtree (Dir.path is mutable, under Dir.mu).
//
// # Locks
//
// Lock order: content.mu before File.mu. Dir.mu is never held with another.
// No lock is held across an S3 request except content.mu, which serialises
// a file's writes and commits by design (a write that must start the
// multipart upload waits for CreateMultipartUpload).
package fs
