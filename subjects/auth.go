package subjects

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/nats-io/nkeys"
)

// Broker accounts and identities. The file servers and the broker share one
// secret, the service password; from it both derive the key that signs user
// authorizations, so an operator configures a single secret.
const (
	// Account holds JetStream, the file servers and every user connection.
	Account = "FTFS"
	// SystemAccount is the NATS system account (for `nats server report`).
	SystemAccount = "SYS"
	// ServiceUser is the file servers' identity: full access to Account.
	ServiceUser = "ftfs-service"
	// SystemUser is the operator's identity in SystemAccount.
	SystemUser = "system"
	// BrokerEventsUser is each broker's own in-process identity in
	// SystemAccount, with a password made afresh at every start: it reads
	// the connection events that ServerGone is made from.
	BrokerEventsUser = "ftfs-broker-events"
)

// File servers connect with these connection names (nats.Name), by which
// the brokers tell their disconnection from a user's.
const (
	ConnNamePrimary = "ftfs-primary"
	ConnNameBackup  = "ftfs-backup"
)

// Environment variables; the development values live in .env, which goreman
// loads for the Procfile.
const (
	EnvServicePassword = "FTFS_SERVICE_PASSWORD"
	EnvSystemPassword  = "FTFS_SYSTEM_PASSWORD"
	EnvAdminPassword   = "FTFS_ADMIN_PASSWORD"
	EnvUserPassword    = "FTFS_PASSWORD"
	// EnvTLSCA names the CA file that signed the brokers' certificates,
	// for every process that connects to a broker (flag --tls-ca).
	EnvTLSCA = "FTFS_TLS_CA"
)

// IssuerKey derives the account key that signs auth callout responses from
// the service password. The broker configures its public key as the callout
// issuer; the file servers sign with it.
func IssuerKey(servicePassword string) (nkeys.KeyPair, error) {
	if servicePassword == "" {
		return nil, fmt.Errorf("no service password: set %s", EnvServicePassword)
	}
	seed := sha256.Sum256([]byte("ftfs auth callout issuer v1\x00" + servicePassword))
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteAccount, seed[:])
	if err != nil {
		return nil, fmt.Errorf("derive issuer key: %w", err)
	}
	return kp, nil
}

// UserPublish lists the only subjects a user connection may publish to: the
// file service's requests and its discovery subjects.
func UserPublish() []string {
	return []string{Prefix + ".>", DiscoveryPing, DiscoveryInfo, DiscoveryStats}
}

// UserSubscribe lists the only subjects a user connection may subscribe to:
// its own inbox, and the brokers' ServerGone notices.
func UserSubscribe(user string) []string {
	return []string{Inbox(user) + ".>", ServerGone}
}

// UploadTokenPrefix starts the token of an upload connection (Direct): a
// client that opened a direct upload connects a second time with
// UploadToken, and that connection may publish to the upload's chunk
// subject and nothing else.
const UploadTokenPrefix = "ftfs-upload."

// UploadToken is the connection token of a direct upload: its ID and the
// secret the server handed out with it.
func UploadToken(upload, secret string) string { return UploadTokenPrefix + upload + "." + secret }

// ParseUploadToken splits an upload connection's token; ok is false for any
// other token (a session's).
func ParseUploadToken(token string) (upload, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, UploadTokenPrefix)
	if !ok {
		return "", "", false
	}
	upload, secret, ok = strings.Cut(rest, ".")
	return upload, secret, ok && upload != "" && secret != ""
}

// UploadPublish lists the only subject an upload connection may publish to:
// its upload's chunk subject, where JetStream acknowledges each chunk to the
// connection's inbox (UserSubscribe of the upload's owner).
func UploadPublish(bucket, upload string) []string { return []string{ObjectChunks(bucket, upload)} }
