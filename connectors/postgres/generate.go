package postgres

// NewKeySecret generates a key in the same format as CreateKey ("hxp-" and 48 base62
// characters, the first KeyIDLength of them its public id) without storing it: for
// static keys that the config holds by hash only.
func NewKeySecret() (secret, id string, err error) { return newKeySecret() }
