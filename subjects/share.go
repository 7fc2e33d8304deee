package subjects

import (
	"encoding/base64"
	"strings"
	"time"
)

// Share links. A user makes a link to one file (anyone holding it may
// download that file) or an upload-only link to a folder (anyone holding
// it may add new files below it, and do nothing else); the link's secret
// token is shown once and stored nowhere on the servers (SharesBucket is
// keyed by its SHA-256, as sessions are). Links are used over HTTP
// through `ftfs gateway`, a NATS client like the CLI with its own
// identity, GatewayUser: it sends the link's token (HeaderLink) and, for a
// link with a password, the password (HeaderLinkPassword) in place of a
// session, on the link form (Link) of the ordinary request subjects.
//
//	share       ShareCreate  ShareCreateRequest -> ShareInfo (with Token, once)
//	            ShareList    (session)          -> ShareListReply: one's own
//	            links (an admin's: everyone's)
//	            ShareRemove  ShareRemoveRequest -> Empty: the link is refused
//	            from the next request on, on every server
//	link use    LinkInfo            (link)  -> LinkInfo: what the link is
//	            Link(Get), Link(Stat), Link(Download): as Get, Stat,
//	            Download, for the link's own file only
//	            Link(Put), Link(UploadOpen), ...: as Put and the upload
//	            requests, for a new file below an upload-only link's
//	            prefix only
//
// Every link request is checked on its own: the link must exist and not
// have expired, the password must match (failures are throttled per link),
// and the sharer must still exist and still be allowed to read the file
// (write in the prefix). Unknown, revoked and expired links are all
// CodeNotFound (ReasonLinkUnknown, or ReasonLinkExpired for one that
// exists but has expired); a missing or wrong password is CodeUnauthorized
// with ReasonLinkPassword.
const (
	ShareCreate = userPrefix + ".share.create"
	ShareList   = userPrefix + ".share.ls"
	ShareRemove = userPrefix + ".share.rm"
	LinkInfo    = userPrefix + ".link.info"
	// LinkReplicaInfo is LinkInfo answered only by backups, from their
	// replica dir, for when storage has lost its quorum (as ReplicaStat).
	LinkReplicaInfo = userPrefix + ".link.replica.info"
)

// IsLink says whether subject is a link request subject already.
func IsLink(subject string) bool { return strings.HasPrefix(subject, userPrefix+".link.") }

// Link is the form of a request subject (Get, Download, Put, ...) used
// with a share link instead of a session: "ftfs.v1.ftfs-gateway.link.get"
// once For has filled the gateway's name in.
func Link(subject string) string {
	if IsLink(subject) {
		return subject
	}
	if rest, ok := strings.CutPrefix(subject, userPrefix+"."); ok {
		return userPrefix + ".link." + rest
	}
	return subject
}

// SharesBucket holds the share links, keyed by the SHA-256 of their token.
const SharesBucket = "ftfs-shares"

// GatewayUser is the identity of `ftfs gateway` in UsersAccount: a
// reserved name no user account may take (ValidUser), authenticated by
// the file servers' auth callout with EnvGatewayPassword. It may publish
// only the link requests under its own name and read only its own inbox.
const GatewayUser = "ftfs-gateway"

// Environment of the gateway and the file servers.
const (
	// EnvGatewayPassword is the gateway's secret; without it on the file
	// servers no gateway can connect.
	EnvGatewayPassword = "FTFS_GATEWAY_PASSWORD"
	// EnvGatewayURL is the gateway's public base URL, which `ftfs share`
	// puts in front of the link's path (flag --gateway-url).
	EnvGatewayURL = "FTFS_GATEWAY_URL"
)

// GatewayPublish lists the only subjects a gateway may publish to: the
// link requests under its own name.
func GatewayPublish() []string { return []string{Prefix + "." + GatewayUser + ".link.>"} }

// GatewaySubscribe lists the only subjects a gateway may subscribe to: its
// own inbox and the ServerGone notices.
func GatewaySubscribe() []string { return []string{Inbox(GatewayUser) + ".>", ServerGone} }

// Headers of link requests.
const (
	// HeaderLink carries a share link's token in place of HeaderSession.
	HeaderLink = "Ftfs-Link"
	// HeaderLinkPassword carries the password of a link that has one.
	HeaderLinkPassword = "Ftfs-Link-Password"
)

// Reasons of link refusals.
const (
	ReasonLinkUnknown  Reason = "link-unknown"  // no such link: never made, revoked, or its sharer gone
	ReasonLinkExpired  Reason = "link-expired"  // the link exists but has expired
	ReasonLinkPassword Reason = "link-password" // the link needs a password, and this one is missing or wrong
	ReasonLinkKind     Reason = "link-kind"     // a download link used to upload, or the reverse
	ReasonLinkScope    Reason = "link-scope"    // a file outside the link's file or prefix
)

// ReasonNotContiguous comes with a CodeConflict answer to a Seek download
// of a file whose chunks are not next to each other in the stream: the
// server cannot tell where the chunk asked for is, and the client reads
// from the file's start instead.
const ReasonNotContiguous Reason = "not-contiguous"

// Link lifetimes.
const (
	// DefaultShareTTL is how long a link lasts when its maker says nothing.
	DefaultShareTTL = 7 * 24 * time.Hour
	// MaxShareTTL bounds a link's life: a forgotten link must end.
	MaxShareTTL = 30 * 24 * time.Hour
)

// LinkTokenBytes is the size of a link's secret (random bytes, base64url
// without padding in the link).
const LinkTokenBytes = 32

// ValidLinkToken says whether token has the form of a link token, so
// that a gateway refuses garbage without asking a file server.
func ValidLinkToken(token string) bool {
	if len(token) != base64.RawURLEncoding.EncodedLen(LinkTokenBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil
}

// Link kinds (ShareInfo.Kind).
const (
	LinkDownload = "download"
	LinkUpload   = "upload"
)

// ShareCreateRequest makes a link: to the file Name, or, with Prefix
// instead, an upload-only link to that folder. ExpiresIn is the link's
// life in seconds (0: DefaultShareTTL; at most MaxShareTTL). Password, when
// set, must be given on every use (ValidPassword's rules).
type ShareCreateRequest struct {
	Name      string `json:"name,omitempty"`
	Prefix    string `json:"prefix,omitempty"`
	ExpiresIn int64  `json:"expires_in,omitempty"`
	Password  string `json:"password,omitempty"`
}

// Validate: exactly one of name and prefix, each a valid name; a life
// within MaxShareTTL; a password within ValidPassword's rules.
func (r ShareCreateRequest) Validate() error {
	switch {
	case r.Name == "" && r.Prefix == "":
		return Rejectf(CodeInvalid, ReasonMissingField, "malformed request: missing field %q: give the file to share, or a prefix for an upload-only link", "name")
	case r.Name != "" && r.Prefix != "":
		return Errorf(CodeInvalid, "a link is to a file (name) or an upload-only folder (prefix), not both")
	}
	if err := ValidName(r.Name + r.Prefix); err != nil {
		return err
	}
	if r.ExpiresIn < 0 || time.Duration(r.ExpiresIn)*time.Second > MaxShareTTL {
		return Rejectf(CodeInvalid, ReasonOutOfRange, "a link expires after 1 second to %s; %d seconds is outside that", MaxShareTTL, r.ExpiresIn)
	}
	if r.Password != "" {
		return ValidPassword(r.Password)
	}
	return nil
}

// ShareInfo describes a link. Token is set only in ShareCreate's answer:
// nobody can ask for it again.
type ShareInfo struct {
	// ID names the link for ShareRemove and in the audit log; it is not
	// secret and opens nothing.
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Owner   string    `json:"owner"`
	Name    string    `json:"name,omitempty"`
	Prefix  string    `json:"prefix,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Password says whether the link asks for one.
	Password bool   `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
}

// ShareListReply lists links, by creation time.
type ShareListReply struct {
	Shares []ShareInfo `json:"shares"`
}

// ShareRemoveRequest revokes the link ID.
type ShareRemoveRequest struct {
	ID string `json:"id"`
}

// Validate: the ID is required.
func (r ShareRemoveRequest) Validate() error { return require("id", r.ID) }

// LinkInfoReply is what a link is, answered to its holder (the gateway):
// for a download link its file, for an upload-only link its prefix. The
// sharer's name is not said.
type LinkInfoReply struct {
	Kind    string    `json:"kind"`
	File    *FileInfo `json:"file,omitempty"`
	Prefix  string    `json:"prefix,omitempty"`
	Expires time.Time `json:"expires"`
}
