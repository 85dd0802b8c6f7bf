# The subject report's HTML page in a real browser (Debian's chromium,
# headless).  The page is written to a file and rendered twice: once as a
# screenshot, which must be a valid PNG of the window's size that is not
# blank (many colours, a fair share of non-white pixels, and the headings'
# colour present), and once as the DOM chromium built from it, which must
# hold the key content (the subject's name, a consent purpose, the role that
# accessed the data, a retention date) and, for a name that is an HTML
# injection, that name as text and no <script> element at all.  Content is
# compared, not pixels.
use strict;
use warnings;

use Compress::Zlib qw(uncompress);
use File::Temp qw(tempdir);
use IPC::Run qw(run timeout);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PrivacyNode;

my ($chromium) = grep { -x $_ } map { "$_/chromium" } split(/:/, $ENV{PATH}), '/usr/bin';
plan skip_all => 'chromium is not installed (Debian package chromium; test/lib.sh installs it)'
  unless $chromium;

my ($node) = PrivacyNode::new_node('browser', init => { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->append_conf('postgresql.conf', "timezone = 'UTC'\n");
$node->start;

my $name = "<script>alert(1)</script> Zo\x{eb} O'Hara";
my $name_sql = $name =~ s/'/''/gr;
my $setup = qq{
CREATE EXTENSION privacy;
SELECT privacy.create_category('contact');
SELECT privacy.create_purpose('billing', 'contract', 'sending invoices', ARRAY['contact']);
SELECT privacy.create_purpose('newsletter', 'consent', 'monthly offers by e-mail', ARRAY['contact']);
CREATE ROLE web_shop LOGIN;
CREATE ROLE web_officer LOGIN IN ROLE privacy_officer;
SELECT privacy.grant_purpose('web_shop', 'billing');
CREATE TABLE customers (id bigint PRIMARY KEY, name privacy.encrypted_text(contact),
                        email privacy.encrypted_text(contact), joined_at timestamptz NOT NULL);
GRANT SELECT ON customers TO web_shop;
INSERT INTO customers VALUES (501, '$name_sql', 'zoe\@example.org', '2024-03-15 10:00+00'),
                             (502, 'Someone Else', 'else\@example.org', '2024-03-16 10:00+00');
SELECT privacy.protect_table('customers', 'id');
SELECT privacy.set_retention('customers', 'joined_at', interval '3 years', 'delete');
SELECT privacy.grant_consent('501', 'newsletter', 'signup-form', '{"form": "<img src=x onerror=alert(2)>"}');
SELECT privacy.withdraw_consent('501', 'newsletter', 'unsubscribe-link');
SELECT privacy.open_request('501', 'access');
};
utf8::encode($setup);
$node->safe_psql('postgres', $setup);
$node->safe_psql('postgres', q{SET ROLE web_shop; SET application_name = 'shop-frontend';
SET privacy.purpose = 'billing'; SELECT email FROM customers WHERE id = 501});
$node->safe_psql('postgres', 'SELECT privacy.flush_access_log()');

my $dir = tempdir(CLEANUP => !$ENV{PRIVACY_KEEP_SCREENSHOT});
diag("page and screenshot kept in $dir") if $ENV{PRIVACY_KEEP_SCREENSHOT};
chmod 0755, $dir;
my $page = "$dir/report.html";
my $html = $node->safe_psql('postgres', q{SET ROLE web_officer; SELECT privacy.subject_report_html('501')});
open(my $fh, '>:raw', $page) or die "$page: $!";
print $fh $html;
close $fh;
ok(length($html) > 2000, 'the page was written (' . length($html) . ' bytes)');

# chromium, headless, with its profile and home in the temporary directory
# (it may run as root or as the postgres user: no sandbox either way)
sub chromium
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	local $ENV{HOME} = $dir;
	my $t0 = time;
	my $ok = eval {
		run([ $chromium, '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
				'--disable-extensions', '--user-data-dir=' . "$dir/profile", @args, "file://$page" ],
			'<', \undef, '>', \$out, '2>', \$err, timeout(60));
	};
	diag("chromium: " . ($@ || "exit status $?") . "\n" . substr($err, -2000)) unless $ok;
	return ($out, time - $t0);
}

my ($w, $h) = (1100, 1500);
my (undef, $shot_secs) = chromium("--screenshot=$dir/shot.png", "--window-size=$w,$h", '--hide-scrollbars');
ok(-s "$dir/shot.png", "screenshot taken in ${shot_secs} s");
ok($shot_secs <= 30, 'the screenshot took at most 30 s');

# A small PNG reader: chunks, IHDR, IDAT inflated, scanlines unfiltered.
sub read_png
{
	my ($file) = @_;
	open(my $in, '<:raw', $file) or return;
	local $/;
	my $data = <$in>;
	close $in;
	return unless substr($data, 0, 8) eq "\x89PNG\r\n\x1a\n";
	my ($pos, %ihdr, $idat) = (8);
	while ($pos + 8 <= length $data)
	{
		my ($len, $type) = unpack('N a4', substr($data, $pos, 8));
		my $body = substr($data, $pos + 8, $len);
		@ihdr{qw(width height depth color interlace)} = unpack('N N C C x x C', $body) if $type eq 'IHDR';
		$idat .= $body if $type eq 'IDAT';
		$pos += 12 + $len;
		last if $type eq 'IEND';
	}
	return { %ihdr, raw => defined $idat ? uncompress($idat) : undef };
}

# The first rows of an 8-bit RGB or RGBA image as "r,g,b" strings.
sub pixels
{
	my ($png, $rows) = @_;
	my $bpp = $png->{color} == 6 ? 4 : 3;
	my $stride = $png->{width} * $bpp;
	my @prev = (0) x $stride;
	my @pixels;
	for my $y (0 .. $rows - 1)
	{
		my $off = $y * ($stride + 1);
		my $filter = ord(substr($png->{raw}, $off, 1));
		my @line = unpack('C*', substr($png->{raw}, $off + 1, $stride));
		for my $i (0 .. $stride - 1)
		{
			my $a = $i >= $bpp ? $line[ $i - $bpp ] : 0;
			my $b = $prev[$i];
			my $c = $i >= $bpp ? $prev[ $i - $bpp ] : 0;
			my $pred = $filter == 1 ? $a : $filter == 2 ? $b : $filter == 3 ? ($a + $b) >> 1 : 0;
			if ($filter == 4)
			{
				my $p = $a + $b - $c;
				my ($pa, $pb, $pc) = (abs($p - $a), abs($p - $b), abs($p - $c));
				$pred = ($pa <= $pb && $pa <= $pc) ? $a : ($pb <= $pc) ? $b : $c;
			}
			$line[$i] = ($line[$i] + $pred) & 0xff;
		}
		for (my $i = 0; $i < $stride; $i += $bpp)
		{
			push @pixels, "$line[$i],$line[$i + 1],$line[$i + 2]";
		}
		@prev = @line;
	}
	return \@pixels;
}

my $png = read_png("$dir/shot.png");
ok($png && defined $png->{raw}, 'the screenshot is a PNG with image data');
SKIP:
{
	skip 'no PNG to look into', 5 unless $png && defined $png->{raw};
	is("$png->{width}x$png->{height}", "${w}x$h", 'the screenshot has the window\'s size');
	ok($png->{depth} == 8 && ($png->{color} == 2 || $png->{color} == 6) && $png->{interlace} == 0,
		'8-bit RGB(A), not interlaced');
	is(length($png->{raw}), $h * ($w * ($png->{color} == 6 ? 4 : 3) + 1), 'every scanline is there');
	my $px = pixels($png, 500);
	my %colours;
	$colours{$_}++ for @$px;
	my $white = ($colours{'255,255,255'} // 0) + ($colours{'244,246,248'} // 0);
	my $inked = 1 - $white / scalar(@$px);
	ok(keys(%colours) >= 20 && $inked > 0.02,
		sprintf('the top of the page is not blank: %d colours, %.1f %% not background', scalar(keys %colours), 100 * $inked));
	ok(($colours{'11,61,98'} // 0) >= 100, 'the headings\' colour (#0b3d62) is on screen');
}

my ($dom, $dom_secs) = chromium('--dump-dom');
utf8::decode($dom);
ok($dom =~ m{</html>\s*$}, "the DOM was dumped in ${dom_secs} s");
ok($dom_secs <= 30, 'the DOM dump took at most 30 s');
(my $text = $dom) =~ s/<[^>]*>/ /g;
for ($text) { s/&lt;/</g; s/&gt;/>/g; s/&quot;/"/g; s/&#39;/'/g; s/&amp;/&/g; s/\s+/ /g; }
ok(index($text, $name) >= 0, 'the subject\'s name is on the page, as text');
ok(index($text, 'zoe@example.org') >= 0, 'the decrypted e-mail is on the page');
ok($dom !~ /<script/i, 'the DOM has no <script> element');
ok($dom !~ /<img/i && index($text, '<img src=x onerror=alert(2)>') >= 0,
	'consent evidence that is HTML shows as text, not as an element');
like($text, qr/The data we hold about you/, 'heading: the data');
like($text, qr/newsletter .*consent withdrawn/, 'the consent purpose and its withdrawal');
like($text, qr/Who accessed your data .*web_shop shop-frontend billing public\.customers contact 1/,
	'the role, application, purpose, table, category and count of the access');
like($text, qr/2027-03-15 10:00 UTC/, 'the retention date (joined 2024-03-15 + 3 years)');
like($text, qr/Your requests .* access .* open/, 'the open request');
ok(index($text, 'Someone Else') < 0 && index($text, 'else@example.org') < 0, 'nothing of the other customer');
ok($dom !~ /\b(?:src|href)="(?:https?:)?\/\//i, 'no external resource');

$node->stop;
done_testing();
