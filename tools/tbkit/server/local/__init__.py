"""The part of Tinybird Local's API that `tb --local build|deploy|test run` uses, over the embedded engine.

`tb` first reads `/tokens` (unauthenticated, as Tinybird Local serves it, which is why this API is only
mounted with `tbkit serve --local-api`), lists and creates workspaces with the user and admin tokens,
then uses the workspace's token to upload datafiles to `/v1/build` or `/v1/deploy`, poll
`/v1/deployments/<id>`, append fixtures with `/v1/datasources/<name>/append` and call endpoints. The
installed `tb` client (site-packages `tinybird/tb/`) is the reference for every request and field here.
"""
