package registry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// configureTLS applies a host's ca, client and skip_verify settings to tr.
func configureTLS(tr *http.Transport, c hostConfig) error {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tr.TLSClientConfig != nil {
		cfg = tr.TLSClientConfig.Clone()
	}
	if c.skipVerify != nil {
		cfg.InsecureSkipVerify = *c.skipVerify
	}
	if len(c.caCerts) > 0 {
		// Extra CAs add to the system's, as in containerd: a mirror with a
		// private CA must not stop the public upstream from verifying.
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, f := range c.caCerts {
			pem, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("read CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("CA file %s: no PEM certificate found", f)
			}
		}
		cfg.RootCAs = pool
	}
	for _, pair := range c.clientPairs {
		certPEM, err := os.ReadFile(pair[0])
		if err != nil {
			return fmt.Errorf("read client certificate: %w", err)
		}
		keyPEM := certPEM // no key file: the key is in the certificate file
		if pair[1] != "" {
			if keyPEM, err = os.ReadFile(pair[1]); err != nil {
				return fmt.Errorf("read client key: %w", err)
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("client key pair %s: %w", pair[0], err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	tr.TLSClientConfig = cfg
	return nil
}

// loadCertFiles reads a host directory in Docker's certs.d layout: *.crt are
// CA files, *.cert are client certificates with the key in the *.key of the
// same name (or, without one, in the .cert itself). It returns one server
// entry for the default upstream.
func loadCertFiles(dir string) ([]hostConfig, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read host directory: %w", err)
	}
	c := hostConfig{capabilities: defaultCapabilities}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".crt"):
			c.caCerts = append(c.caCerts, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".cert"):
			pair := [2]string{filepath.Join(dir, name), ""}
			key := filepath.Join(dir, strings.TrimSuffix(name, ".cert")+".key")
			if _, err := os.Stat(key); err == nil {
				pair[1] = key
			} else if !os.IsNotExist(err) {
				return nil, fmt.Errorf("client key: %w", err)
			}
			c.clientPairs = append(c.clientPairs, pair)
		}
	}
	return []hostConfig{c}, nil
}
