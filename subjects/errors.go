package subjects

import (
	"errors"
	"fmt"
)

// Code is a wire error code, sent in the "Nats-Service-Error-Code" header of
// a micro error reply. Each kind of failure has exactly one code; client/
// turns a code back into a sentinel error that callers test with errors.Is.
type Code string

// The error codes. The numbers follow HTTP where one fits, so `nats micro
// stats` reads naturally.
const (
	CodeInvalid      Code = "400" // malformed request or bad name
	CodeUnauthorized Code = "401" // no, bad or expired session; bad login
	CodeForbidden    Code = "403" // not the owner, not an admin, refused by an access rule
	CodeNotFound     Code = "404" // no such file, user or upload
	CodeConflict     Code = "409" // exists already, or changed meanwhile
	CodeWatchBehind  Code = "410" // a watch's cursor is older than the deletes storage keeps: list again
	CodeTooLarge     Code = "413" // chunk or file over its limit
	CodeIntegrity    Code = "422" // size or SHA-256 digest mismatch
	CodeReadOnly     Code = "423" // storage quorum lost: no writes; reads from a replica
	CodeThrottled    Code = "420" // too many failed logins: wait, then try again (never retried by itself)
	CodeBusy         Code = "429" // window exceeded; retry later
	CodeInternal     Code = "500" // a server bug; see its log
	CodeUnavailable  Code = "503" // storage unreachable; retry
	CodeQuota        Code = "507" // a per-user limit reached: storage quota, open uploads, transfers at once
)

// Reason says which rule a request broke, finer than its Code, in the
// HeaderErrorReason header: a program can tell an empty name from a ".."
// segment without parsing the sentence. Most errors have none.
type Reason string

// The reasons of CodeInvalid file names (ValidName).
const (
	ReasonNameEmpty         Reason = "name-empty"
	ReasonNameTooLong       Reason = "name-too-long"
	ReasonNameNotUTF8       Reason = "name-not-utf8"
	ReasonNameAbsolute      Reason = "name-absolute"
	ReasonNameTrailingSlash Reason = "name-trailing-slash"
	ReasonNameControlChar   Reason = "name-control-char"
	// ReasonNameFormatChar: an invisible Unicode format character
	// (category Cf: zero-width spaces and joiners, bidi marks, overrides
	// and isolates, the BOM, the soft hyphen), which would let
	// "bob\u200b.txt" pass for "bob.txt" or reverse an extension.
	ReasonNameFormatChar   Reason = "name-format-char"
	ReasonNameBackslash    Reason = "name-backslash"
	ReasonNameEmptySegment Reason = "name-empty-segment"
	ReasonNameDotSegment   Reason = "name-dot-segment"
)

// The reasons of CodeInvalid request bodies (Decode and the requests'
// Validate methods).
const (
	ReasonMalformedJSON Reason = "malformed-json" // not one JSON object: truncated, invalid, null, an array
	ReasonUnknownField  Reason = "unknown-field"  // a key the request type does not have (names are case-sensitive)
	ReasonWrongType     Reason = "wrong-type"     // a field of the wrong JSON type, or a number out of its type's range
	ReasonTrailingData  Reason = "trailing-data"  // anything but white space after the object
	ReasonMissingField  Reason = "missing-field"  // a required field absent or empty
	ReasonOutOfRange    Reason = "out-of-range"   // a number outside what the field allows (a negative limit)
	ReasonBadOffset     Reason = "bad-offset"     // a download position outside the file
)

// The reasons of CodeInvalid access rules and groups (ParseAccessLine,
// ValidAccessPrefix, ValidGroup).
const (
	ReasonAccessPrefix Reason = "access-prefix" // not "" nor a folder ending in "/"
	ReasonAccessSyntax Reason = "access-syntax" // a line without RIGHTS: MEMBERS
	ReasonAccessRight  Reason = "access-right"  // an unknown right, or none
	ReasonAccessMember Reason = "access-member" // a bad member, or none
	ReasonAccessEmpty  Reason = "access-empty"  // a rule without lines, or too many
	ReasonGroupName    Reason = "group-name"    // a bad group name
)

// ReasonResume comes with a CodeConflict commit of a direct upload whose
// chunk subject holds another number of chunks than the client counted (a
// chunk stored twice): the client asks UploadResume, which walks the
// chunks into order, and commits again.
const ReasonResume Reason = "resume"

// ReasonReplicaPending comes with a CodeNotFound answer of a backup's
// replica (storage has lost its quorum) for a file it has seen stored but
// not yet copied: the file exists, the replica cannot serve it yet.
const ReasonReplicaPending Reason = "replica-pending"

// Error is a failure as it crosses the wire: an operation, a kind (Code) and
// a sentence for the user.
type Error struct {
	Code    Code
	Reason  Reason // "" unless the code has finer kinds
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Rejectf makes an Error with a Reason.
func Rejectf(code Code, reason Reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the Reason of an *Error in err's chain, or "".
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// CodeOf returns the wire code of err: the Code of an *Error in its chain,
// or CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Retryable says whether a request that failed with code may succeed if sent
// again unchanged, possibly to another server.
func (c Code) Retryable() bool {
	return c == CodeUnavailable || c == CodeBusy
}
