/*
 * label_text.c — parse a privacy security label (grammar in label_text.h).
 *
 * label.c calls it from the label provider hook, where any role that owns a
 * table can reach it with any string; test/fuzz/fuzz_label.c checks it
 * alone.  It allocates nothing: values are copied into the caller's buffer,
 * which can hold them all (each value is at most as long as its text, and
 * its "=" leaves room for the NUL).
 */
#include "label_text.h"

#include <string.h>

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Case-insensitive (ASCII) comparison of a key span with a lower-case word. */
static int
key_is(const char *key, size_t len, const char *word)
{
	size_t		i;

	if (strlen(word) != len)
		return 0;
	for (i = 0; i < len; i++)
	{
		char		c = key[i];

		if (c >= 'A' && c <= 'Z')
			c = (char) (c - 'A' + 'a');
		if (c != word[i])
			return 0;
	}
	return 1;
}

/* A category name as privacy_internal.check_name() accepts it. */
static int
valid_category_name(const char *s)
{
	size_t		n;

	if (!(s[0] >= 'a' && s[0] <= 'z'))
		return 0;
	for (n = 1; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
			return 0;
	return n <= LABEL_TEXT_NAME_MAX;
}

static int
refuse(LabelTextError *err, const char *reason, const char *item, size_t item_len)
{
	err->reason = reason;
	err->item = item != NULL ? item : "";
	err->item_len = (int) (item_len > 65535 ? 65535 : item_len);
	return -1;
}

int
label_text_parse(const char *label, int is_column, char *buf, size_t buflen,
				 LabelText *out, LabelTextError *err)
{
	const char *p = label;
	LabelText	lab;
	size_t		used = 0;
	int			seen_category = 0,
				seen_searchable = 0,
				seen_encrypt = 0,
				seen_subject = 0;

	memset(&lab, 0, sizeof(lab));
	memset(err, 0, sizeof(*err));
	if (label == NULL || buf == NULL || buflen < strlen(label) + 1)
		return refuse(err, "The label could not be read.", NULL, 0);
	while (is_space(*p))
		p++;
	if (*p == '\0')
		return refuse(err, "The label is empty; use IS NULL to remove a label.", NULL, 0);

	for (;;)
	{
		const char *key;
		size_t		keylen;
		char	   *value = buf + used;
		size_t		valuelen = 0;
		int			has_value = 0;
		int		   *seen;

		while (is_space(*p))
			p++;
		key = p;
		while (*p && !is_space(*p) && *p != '=' && *p != ',')
			p++;
		keylen = (size_t) (p - key);
		if (keylen == 0)
			return refuse(err, *p == '=' ? "A value has no key before its \"=\"." :
						  "The label has an empty item (two commas in a row, or a comma at the start or the end).",
						  NULL, 0);
		while (is_space(*p))
			p++;
		if (*p == '=')
		{
			has_value = 1;
			p++;
			while (is_space(*p))
				p++;
			if (*p == '"')
			{
				p++;
				for (;;)
				{
					if (*p == '\0')
						return refuse(err, "The double-quoted value of \"%.*s\" is not closed.", key, keylen);
					if (*p == '"' && p[1] == '"')
					{
						value[valuelen++] = '"';
						p += 2;
					}
					else if (*p == '"')
					{
						p++;
						break;
					}
					else
						value[valuelen++] = *p++;
				}
				while (is_space(*p))
					p++;
				if (*p != '\0' && *p != ',')
					return refuse(err, "Unexpected text after the closing quote of the value of \"%.*s\".", key, keylen);
			}
			else
			{
				while (*p && *p != ',')
					value[valuelen++] = *p++;
				while (valuelen > 0 && is_space(value[valuelen - 1]))
					valuelen--;
			}
			value[valuelen] = '\0';
			if (valuelen == 0)
				return refuse(err, "Key \"%.*s\" has an empty value.", key, keylen);
		}
		else if (*p != '\0' && *p != ',')
			return refuse(err, "Expected \"=\" or \",\" after \"%.*s\".", key, keylen);

		/* what the item means, and whether it fits this kind of object */
		if (key_is(key, keylen, "category") || key_is(key, keylen, "searchable") ||
			key_is(key, keylen, "encrypt"))
		{
			if (!is_column)
				return refuse(err, "\"%.*s\" applies to columns, not to tables.", key, keylen);
		}
		else if (key_is(key, keylen, "subject"))
		{
			if (is_column)
				return refuse(err, "\"subject\" applies to tables, not to columns.", NULL, 0);
		}
		else
			return refuse(err, is_column ?
						  "Unknown key \"%.*s\"; a column label takes category, searchable and encrypt." :
						  "Unknown key \"%.*s\"; a table label takes subject.", key, keylen);

		if (key_is(key, keylen, "category") || key_is(key, keylen, "subject"))
		{
			seen = key_is(key, keylen, "category") ? &seen_category : &seen_subject;
			if (!has_value)
				return refuse(err, "\"%.*s\" has no \"=\" and no value.", key, keylen);
			if (*seen)
				return refuse(err, "\"%.*s\" appears more than once.", key, keylen);
			*seen = 1;
			if (seen == &seen_category)
			{
				if (!valid_category_name(value))
					return refuse(err, "\"%.*s\" is not a category name: a category name starts with a lower-case letter and has at most 63 lower-case letters, digits and underscores.",
								  value, valuelen);
				lab.category = value;
			}
			else
			{
				if (valuelen > LABEL_TEXT_NAME_MAX)
					return refuse(err, "The column name is longer than 63 bytes.", NULL, 0);
				lab.subject = value;
			}
			used += valuelen + 1;
		}
		else
		{
			seen = key_is(key, keylen, "searchable") ? &seen_searchable : &seen_encrypt;
			if (has_value)
				return refuse(err, "\"%.*s\" is a flag and takes no value.", key, keylen);
			if (*seen)
				return refuse(err, "\"%.*s\" appears more than once.", key, keylen);
			*seen = 1;
		}

		if (*p == '\0')
			break;
		p++;					/* the ',' */
	}

	lab.searchable = seen_searchable;
	lab.encrypt = seen_encrypt;
	if (is_column && !seen_category)
		return refuse(err, "A column label must name its category (category=<name>).", NULL, 0);
	if (!is_column && !seen_subject)
		return refuse(err, "A table label must name the subject column (subject=<column>).", NULL, 0);
	*out = lab;
	return 0;
}
