package client

import (
	"hash"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// Progress reports a transfer as it goes.
type Progress struct {
	Done, Total int64 // bytes; Total is -1 when unknown
	// Instance is the file server holding an upload ("" for downloads).
	Instance string
	// Failovers counts the times the transfer moved to another server or
	// repeated a request a server swallowed.
	Failovers int
	// Resent counts bytes sent or received twice because of failovers.
	Resent int64
}

type transferOptions struct {
	noOverwrite bool
	progress    func(Progress)
	version     string // Get: only this version (OnlyVersion)
}

// TransferOption configures Put and Get.
type TransferOption func(*transferOptions)

// NoOverwrite makes Put fail with ErrConflict when the name exists.
func NoOverwrite() TransferOption { return func(o *transferOptions) { o.noOverwrite = true } }

// OnProgress calls f as the transfer goes (at most every 100ms, and once at
// the end), from the transfer's goroutine.
func OnProgress(f func(Progress)) TransferOption {
	return func(o *transferOptions) { o.progress = f }
}

// reporter throttles progress callbacks.
type reporter struct {
	f    func(Progress)
	p    Progress
	last time.Time
}

func (r *reporter) report(final bool) {
	if r.f == nil || (!final && time.Since(r.last) < 100*time.Millisecond) {
		return
	}
	r.last = time.Now()
	r.f(r.p)
}

func digestOf(h hash.Hash) string {
	return subjects.Digest(h.Sum(nil))
}
