package client

import (
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// Sentinel errors. Everything the client returns wraps one of them where
// it applies, so callers test with errors.Is(err, client.ErrNotFound).
var (
	ErrInvalid      = errors.New("invalid request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrTooLarge     = errors.New("too large")
	ErrIntegrity    = errors.New("integrity check failed")
	ErrUnavailable  = errors.New("service unavailable")
	// ErrReadOnly: storage has lost its quorum (too few brokers are up);
	// writes are refused until it is back, reads are served by a backup.
	ErrReadOnly = errors.New("read-only")
	ErrBusy     = errors.New("server busy")
	ErrInternal = errors.New("internal server error")
	// ErrThrottled: too many failed logins for the user or from the
	// connection; wait before trying again.
	ErrThrottled = errors.New("too many failed logins")
	// ErrQuota: a per-user limit is reached (storage quota, unfinished
	// uploads, transfers at once).
	ErrQuota = errors.New("limit reached")
	// ErrWatchBehind: a watch's cursor is older than the deletes storage
	// keeps; list the files again and watch from now.
	ErrWatchBehind = errors.New("watch fell behind: list again")
	// ErrNoFileServer: a broker answered, but no file server did; it
	// comes with ErrUnavailable.
	ErrNoFileServer = errors.New("no file server answered")
)

var sentinels = map[subjects.Code]error{
	subjects.CodeInvalid:      ErrInvalid,
	subjects.CodeUnauthorized: ErrUnauthorized,
	subjects.CodeForbidden:    ErrForbidden,
	subjects.CodeNotFound:     ErrNotFound,
	subjects.CodeConflict:     ErrConflict,
	subjects.CodeTooLarge:     ErrTooLarge,
	subjects.CodeIntegrity:    ErrIntegrity,
	subjects.CodeReadOnly:     ErrReadOnly,
	subjects.CodeBusy:         ErrBusy,
	subjects.CodeInternal:     ErrInternal,
	subjects.CodeUnavailable:  ErrUnavailable,
	subjects.CodeThrottled:    ErrThrottled,
	subjects.CodeQuota:        ErrQuota,
	subjects.CodeWatchBehind:  ErrWatchBehind,
}

// Error is a failure reported by a file server: its wire code and the
// server's sentence.
type Error struct {
	Code    subjects.Code
	Reason  subjects.Reason // which rule was broken, for some codes
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is matches the sentinel of e's code.
func (e *Error) Is(target error) bool {
	s, ok := sentinels[e.Code]
	return ok && s == target
}

// fromWire turns a wire error (or a locally detected subjects.Error) into
// an *Error.
func fromWire(err error) error {
	var se *subjects.Error
	if errors.As(err, &se) {
		return &Error{Code: se.Code, Reason: se.Reason, Message: se.Message}
	}
	return err
}

// errorIn returns the error a reply's headers carry, or nil.
func errorIn(h nats.Header) *Error {
	code := h.Get(subjects.HeaderErrorCode)
	if code == "" {
		return nil
	}
	return &Error{Code: subjects.Code(code), Reason: subjects.Reason(h.Get(subjects.HeaderErrorReason)), Message: h.Get(subjects.HeaderErrorText)}
}
