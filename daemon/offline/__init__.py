"""`framepool process`: the supervisor → rings → workers path over a media file (supervisor process).

`runner` feeds the pool with back-pressure and collects results, `media` decodes input and encodes output.
"""
