// Package certs makes development TLS certificates: a CA and one
// certificate signed by it that a broker uses for its client port and for
// its routes to the other brokers (it is both a server and a client
// certificate). Production deployments bring their own.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The files Dev writes, in its directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
	CertFile  = "server.pem"
	KeyFile   = "server-key.pem"
)

// Validity is how long development certificates last.
const Validity = 365 * 24 * time.Hour

// DefaultHosts are the names every development certificate is valid for.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Bundle is a CA and a certificate it signed, PEM encoded.
type Bundle struct {
	CA, CAKey, Cert, Key []byte
	Hosts                []string // what Cert is valid for
	NotAfter             time.Time
}

// Make makes a new CA and a certificate for DefaultHosts and hosts (names
// or IP addresses), valid from now for Validity.
func Make(now time.Time, hosts ...string) (Bundle, error) {
	all := slices.Clone(DefaultHosts)
	for _, h := range hosts {
		if h != "" && !slices.Contains(all, h) {
			all = append(all, h)
		}
	}
	// An hour of slack in the past for clocks a little behind this one.
	notBefore, notAfter := now.Add(-time.Hour), now.Add(Validity)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Bundle{}, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"ftfs development"}, CommonName: "ftfs development CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// It signs only leaf certificates.
		MaxPathLenZero: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Bundle{}, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Bundle{}, fmt.Errorf("parse CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Bundle{}, fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"ftfs development"}, CommonName: "ftfs broker"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// ClientAuth too: a broker presents it when it dials a route.
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range all {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return Bundle{}, fmt.Errorf("create certificate: %w", err)
	}

	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return Bundle{}, err
	}
	leafKeyPEM, err := keyPEM(key)
	if err != nil {
		return Bundle{}, err
	}
	return Bundle{
		CA:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CAKey:    caKeyPEM,
		Cert:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:      leafKeyPEM,
		Hosts:    all,
		NotAfter: notAfter,
	}, nil
}

// Dev makes a Bundle and writes it into dir (created if needed): CAFile,
// CAKeyFile, CertFile and KeyFile, the keys readable by their owner only.
// It refuses to replace existing files, so that a CA clients already trust
// is not lost by mistake.
func Dev(dir string, hosts ...string) (Bundle, error) {
	b, err := Make(time.Now(), hosts...)
	if err != nil {
		return Bundle{}, err
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{CAFile, b.CA, 0o644},
		{CAKeyFile, b.CAKey, 0o600},
		{CertFile, b.Cert, 0o644},
		{KeyFile, b.Key, 0o600},
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f.name)); err == nil {
			return Bundle{}, fmt.Errorf("certs: %s already exists; remove it or choose another directory", filepath.Join(dir, f.name))
		} else if !errors.Is(err, os.ErrNotExist) {
			return Bundle{}, fmt.Errorf("certs: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Bundle{}, fmt.Errorf("certs: %w", err)
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return Bundle{}, fmt.Errorf("certs: %w", err)
		}
	}
	return b, nil
}

// writeNew creates path with perm from the start, so that a key is never
// readable by others, not even for a moment.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	// The umask may have taken bits away from perm, never added any; set
	// it exactly so that a certificate is readable as asked.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// serial is a random 128-bit serial number, as RFC 5280 asks (positive,
// at most 20 bytes).
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n.Add(n, big.NewInt(1))
}
