package mountopts

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultConfigPath is where named connections are read from when neither
// --config nor S3MOUNT_CONFIG names a file.
const DefaultConfigPath = "/etc/s3mount/connections.toml"

// ConfigEnv names the environment variable that points at the connections
// file.
const ConfigEnv = "S3MOUNT_CONFIG"

// Secret is a string that never prints: fmt, %v of a struct holding it and
// slog all show "[redacted]". string(s) is the value.
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalText reads a secret from a config file.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// Duration is a time.Duration written as "1h" or "90m" in a config file.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"1h\" or \"90m\"", b)
	}
	*d = Duration(v)
	return nil
}

// Connection is one [connections.NAME] table of the connections file:
// where to connect and as whom. Every field is optional; see README.md.
type Connection struct {
	Auth                string   `toml:"auth"`
	AccessKeyID         string   `toml:"access_key_id"`
	SecretAccessKey     Secret   `toml:"secret_access_key"`
	SecretAccessKeyFile string   `toml:"secret_access_key_file"`
	RoleARN             string   `toml:"role_arn"`
	ExternalID          string   `toml:"external_id"`
	RoleSessionName     string   `toml:"role_session_name"`
	SessionDuration     Duration `toml:"session_duration"`
	STSEndpointURL      string   `toml:"sts_endpoint_url"`
	Bucket              string   `toml:"bucket"`
	Path                string   `toml:"path"`
	Region              string   `toml:"region"`
	EndpointURL         string   `toml:"endpoint_url"`
	ForcePathStyle      bool     `toml:"force_path_style"`
	DownloadThreads     int      `toml:"download_threads"`
}

var connectionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// LoadConnections reads the connections file at path: one table
// [connections.NAME] per connection. Unknown keys are errors (a typo must
// not silently drop a restriction). When any connection holds
// secret_access_key inline, the file itself must pass CheckSecretFile.
func LoadConnections(path string) (map[string]Connection, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var file struct {
		Connections map[string]Connection `toml:"connections"`
	}
	md, err := toml.Decode(string(b), &file)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("config file %s: unknown key %s", path, strings.Join(keys, ", "))
	}
	names := make([]string, 0, len(file.Connections))
	for name := range file.Connections {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := file.Connections[name]
		if !connectionName.MatchString(name) {
			return nil, fmt.Errorf("config file %s: connection name %q must be letters, digits, '.', '_' or '-'", path, name)
		}
		if c.SecretAccessKey != "" {
			if err := CheckSecretFile(path, "config file"); err != nil {
				return nil, fmt.Errorf("%w (connection %q has secret_access_key)", err, name)
			}
		}
	}
	if file.Connections == nil {
		file.Connections = map[string]Connection{}
	}
	return file.Connections, nil
}

// ConfigPath is the connections file to read: flag when set, else
// $S3MOUNT_CONFIG, else DefaultConfigPath. explicit is false only for the
// default, which may be missing.
func ConfigPath(flag string) (path string, explicit bool) {
	if flag != "" {
		return flag, true
	}
	if p := os.Getenv(ConfigEnv); p != "" {
		return p, true
	}
	return DefaultConfigPath, false
}

// LoadConnectionsAt reads the connections file ConfigPath chose. A missing
// default file is no connections; a default file this user may not read is
// no connections either (its connections are someone else's), so that
// plain bucket mounts keep working.
func LoadConnectionsAt(path string, explicit bool) (map[string]Connection, error) {
	conns, err := LoadConnections(path)
	if err != nil && !explicit && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)) {
		return map[string]Connection{}, nil
	}
	return conns, err
}

// Apply fills o from the connection named name. Command-line options are
// applied after it, so they override the file.
func (c Connection) Apply(name string, o *Options) error {
	o.Connection = name
	if c.Bucket != "" {
		if err := ValidateBucketName(c.Bucket); err != nil {
			return fmt.Errorf("connection %q: %w", name, err)
		}
	}
	prefix, err := NormalizePath(c.Path)
	if err != nil {
		return fmt.Errorf("connection %q: %w", name, err)
	}
	if prefix != "" && c.Bucket == "" {
		return fmt.Errorf("connection %q: path %q needs a bucket", name, c.Path)
	}
	o.Bucket, o.Prefix = c.Bucket, prefix
	if c.Auth != "" {
		o.Auth = c.Auth
	}
	o.AccessKeyID = c.AccessKeyID
	o.SecretAccessKey = c.SecretAccessKey
	o.SecretAccessKeyFile = c.SecretAccessKeyFile
	o.RoleARN = c.RoleARN
	o.ExternalID = c.ExternalID
	if c.RoleSessionName != "" {
		o.RoleSessionName = c.RoleSessionName
	}
	o.SessionDuration = time.Duration(c.SessionDuration)
	o.STSEndpointURL = c.STSEndpointURL
	o.Region = c.Region
	o.EndpointURL = c.EndpointURL
	o.ForcePathStyle = c.ForcePathStyle
	if c.DownloadThreads != 0 {
		o.DownloadThreads = c.DownloadThreads
	}
	return nil
}

// NewExternalID returns a fresh random external ID for a role's trust
// policy: 32 hex characters from crypto/rand (within STS's 2..1224
// characters of [\w+=,.@:/-]).
func NewExternalID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
