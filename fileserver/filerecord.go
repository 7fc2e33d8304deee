package fileserver

// The files index keeps every live file of the bucket (usage.files), and
// a file server with a million files must hold them all in memory, so each
// file costs as little heap as it can (BenchmarkFilesIndex measures it).
// A fileRecord packs what a listing shows of one file into one string, one
// allocation, which the index's key (the name) shares; the owner is a
// number into the index's table of owners, and a digest in the object
// store's form is kept as its 32 bytes.

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strings"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// fileRecord is a file as the files index keeps it: a header (size,
// modified, chunks, owner number, name and digest lengths, the meta
// message's stream sequence: 40 bytes), then the name, the digest and the
// version (the object's NUID).
type fileRecord string

const (
	recSize     = 0  // int64
	recModified = 8  // int64: Unix nanoseconds, or noTime
	recChunks   = 16 // uint32
	recOwner    = 20 // uint32: index into usage.owners
	recNameLen  = 24 // uint32
	recDigest   = 28 // uint32: length of the digest as kept, rawDigest if 32 raw bytes
	recSeq      = 32 // uint64: stream sequence of the meta message (a write of the name expects it)
	recHeader   = 40

	// rawDigest marks a digest kept as the 32 bytes of "SHA-256=" and
	// their padded base64url, which is how ftfs and the object store
	// write every digest.
	rawDigest = math.MaxUint32
	noTime    = math.MinInt64
)

// ownerNumber is owner's number in u.owners, added if new; u.mu is held.
func (u *usage) ownerNumber(owner string) uint32 {
	n, ok := u.ownerIDs[owner]
	if !ok {
		n = uint32(len(u.owners))
		u.ownerIDs[owner] = n
		u.owners = append(u.owners, owner)
	}
	return n
}

// pack makes f's record; u.mu is held.
func (u *usage) pack(f subjects.FileInfo, seq uint64) fileRecord {
	digest := []byte(f.Digest)
	digestLen := uint32(len(digest))
	if b64, ok := strings.CutPrefix(f.Digest, subjects.DigestPrefix); ok && len(b64) == 44 {
		if raw, err := base64.URLEncoding.DecodeString(b64); err == nil && len(raw) == 32 && base64.URLEncoding.EncodeToString(raw) == b64 {
			digest, digestLen = raw, rawDigest
		}
	}
	b := make([]byte, recHeader, recHeader+len(f.Name)+len(digest)+len(f.Version))
	modified := int64(noTime)
	if !f.Modified.IsZero() {
		modified = f.Modified.UnixNano()
	}
	binary.LittleEndian.PutUint64(b[recSize:], uint64(f.Size))
	binary.LittleEndian.PutUint64(b[recModified:], uint64(modified))
	binary.LittleEndian.PutUint32(b[recChunks:], f.Chunks)
	binary.LittleEndian.PutUint32(b[recOwner:], u.ownerNumber(f.Owner))
	binary.LittleEndian.PutUint32(b[recNameLen:], uint32(len(f.Name)))
	binary.LittleEndian.PutUint32(b[recDigest:], digestLen)
	binary.LittleEndian.PutUint64(b[recSeq:], seq)
	b = append(append(append(b, f.Name...), digest...), f.Version...)
	return fileRecord(b)
}

func (r fileRecord) u32(at int) uint32 {
	return uint32(r[at]) | uint32(r[at+1])<<8 | uint32(r[at+2])<<16 | uint32(r[at+3])<<24
}

func (r fileRecord) u64(at int) uint64 { return uint64(r.u32(at)) | uint64(r.u32(at+4))<<32 }

// name is the file's name, sharing the record's memory.
func (r fileRecord) name() string { return string(r[recHeader : recHeader+int(r.u32(recNameLen))]) }

func (r fileRecord) size() int64 { return int64(r.u64(recSize)) }

// seq is the stream sequence of the file's meta message.
func (r fileRecord) seq() uint64 { return r.u64(recSeq) }

func (r fileRecord) ownerNumber() uint32 { return r.u32(recOwner) }

// digestEnd is where the digest ends in the record, and whether it is kept
// raw.
func (r fileRecord) digestEnd() (int, bool) {
	from := recHeader + int(r.u32(recNameLen))
	if n := r.u32(recDigest); n != rawDigest {
		return from + int(n), false
	}
	return from + 32, true
}

// version is the file's version (NUID), sharing the record's memory.
func (r fileRecord) version() string {
	end, _ := r.digestEnd()
	return string(r[end:])
}

// info is the record as a listing shows it; u.mu is held.
func (u *usage) info(r fileRecord) subjects.FileInfo {
	from := recHeader + int(r.u32(recNameLen))
	end, raw := r.digestEnd()
	digest := string(r[from:end])
	if raw {
		digest = subjects.Digest([]byte(digest))
	}
	var modified time.Time
	if n := int64(r.u64(recModified)); n != noTime {
		modified = time.Unix(0, n).UTC()
	}
	return subjects.FileInfo{
		Name:     r.name(),
		Size:     r.size(),
		Modified: modified,
		Owner:    u.owners[r.ownerNumber()],
		Digest:   digest,
		Version:  r.version(),
		Chunks:   r.u32(recChunks),
	}
}
