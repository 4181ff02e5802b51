// The two kinds of failure the Python runtime names (voxport/errors.py): bad input from the caller
// (text, options, a voice clip) and a damaged or unsupported artifact.
export class InputError extends Error {
  constructor(message) { super(message); this.name = 'InputError'; }
}

export class ArtifactError extends Error {
  constructor(message) { super(message); this.name = 'ArtifactError'; }
}
