# Least-privilege Vault policy for rotator (KV v2 mounted at "secret/").
# Edit the "apps/" prefix to where your policies' secrets live (their vault.path values).

# The rotated secrets: read the current version, write new versions (check-and-set).
path "secret/data/apps/*" {
  capabilities = ["create", "read", "update"]
}
# Their metadata: current version number, and rotator's custom_metadata (key id, rotation id).
# "patch" lets rotator merge its custom_metadata in one call; without it, it reads, then updates.
path "secret/metadata/apps/*" {
  capabilities = ["read", "create", "update", "patch"]
}

# Secrets rotator generates itself wait here until the vendor has them (vault.staging_prefix).
path "secret/data/rotator/staging/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/rotator/staging/*" {
  capabilities = ["read", "create", "update", "patch", "delete"]
}

# Credentials rotator reads through vault:PATH#FIELD references (provider tokens, webhooks).
path "secret/data/rotator/credentials/*" {
  capabilities = ["read"]
}
path "secret/metadata/rotator/credentials/*" {
  capabilities = ["read"]
}

# The audit chain's HMAC key (audit.key_path): read only. 'rotator audit rotate-key' writes
# new versions with an administrator's token, not rotator's.
path "secret/data/rotator/audit/key" {
  capabilities = ["read"]
}
path "secret/metadata/rotator/audit/key" {
  capabilities = ["read"]
}
# The chain's anchor (audit.anchor_path): rotator moves it forward after each sealing pass.
path "secret/data/rotator/audit/anchor" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/rotator/audit/anchor" {
  capabilities = ["read"]
}

# Keep its own token alive, and let 'rotator validate --online' ask what it may do.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "sys/capabilities-self" {
  capabilities = ["update"]
}
